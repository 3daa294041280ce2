"""Real processes on loopback for the proxy's live tests and its benchmark.

- :class:`TestCA`: a throwaway CA and a leaf certificate for the sink's names.
- :class:`Sink`: an HTTP/1.1 + HTTP/2 + WebSocket server (hypercorn), plain and
  TLS, that records everything it receives. It stands in for the internet,
  and is also reachable under a paste-site name, so a failed block would land
  here and never on a real outside host.
- :class:`ScannerService`: the real scanner, ``python -m scanner``.
- :class:`ScannerDouble`: a deliberately broken scanner (stopped, slow,
  garbage, HTTP 500) whose mode can be switched back to a clean answer for the
  paired control.
- :class:`Proxy`: a real ``mitmdump`` from the venv with the addon, its policy,
  agent registry and audit log in a temporary directory.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from addon.identity import hash_token

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).with_name("mitmdump")
SINK_NAMES = ("sink.test", "pastebin.com", "localhost")
AGENT, TOKEN = "alice", "alice-token-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - reported below if it never succeeds
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last!r})")


# --- certificates ----------------------------------------------------------------------


class TestCA:
    """A CA (written as ``ca.pem``) and one leaf certificate for ``SINK_NAMES``."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "yolo-cage test sink CA")])
        now = dt.datetime.now(dt.UTC)
        ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(n) for n in SINK_NAMES]
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SINK_NAMES[0])]))
            .issuer_name(name)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(ca.public_bytes(pem))
        self.cert_file = directory / "sink.pem"
        self.cert_file.write_bytes(leaf.public_bytes(pem))
        self.key_file = directory / "sink.key"
        self.key_file.write_bytes(
            leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


# --- the sink ----------------------------------------------------------------------------


@dataclass
class Received:
    kind: str  # http | websocket
    http_version: str
    scheme: str
    method: str
    path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    messages: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.decode().lower() == name.lower():
                return v.decode("latin-1")
        return None

    def raw(self) -> bytes:
        """Everything the sink got for this request, as one byte string to search."""
        head = b"".join(k + b":" + v + b"\n" for k, v in self.headers)
        return b"\n".join([self.method.encode(), self.path, self.query, head, self.body, *self.messages])


class Sink:
    """hypercorn on 127.0.0.1: one plain port, one TLS port (h2 and http/1.1), recording everything."""

    def __init__(self, ca: TestCA):
        self.http_port = free_port()
        self.https_port = free_port()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._ca = ca
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="sink", daemon=True)

    def start(self) -> Sink:
        self._thread.start()
        wait_for(self._listening, 15, "sink")
        return self

    def _listening(self) -> bool:
        for port in (self.http_port, self.https_port):
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        return True

    def _serve(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{self.https_port}"]
        config.insecure_bind = [f"127.0.0.1:{self.http_port}"]
        config.certfile, config.keyfile = str(self._ca.cert_file), str(self._ca.key_file)
        config.alpn_protocols = ["h2", "http/1.1"]
        config.accesslog = None
        config.errorlog = None

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self._app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def saw(self, needle: str | bytes) -> bool:
        """Did any request carry ``needle`` anywhere (path, query, headers, body, messages)?"""
        data = needle.encode() if isinstance(needle, str) else needle
        return any(data in r.raw() for r in self.snapshot())

    def _record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    async def _app(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    @staticmethod
    def _received(scope: dict[str, Any], kind: str) -> Received:
        return Received(
            kind, scope["http_version"], scope["scheme"], scope.get("method", "GET"),
            scope["raw_path"], scope["query_string"], list(scope["headers"]),
        )

    async def _http(self, scope: dict[str, Any], receive, send) -> None:
        item = self._received(scope, "http")
        more = True
        while more:
            message = await receive()
            item.body += message.get("body", b"")
            more = message.get("more_body", False)
        self._record(item)
        answer = json.dumps({"sink": "ok", "http_version": scope["http_version"], "bytes": len(item.body)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})

    async def _websocket(self, scope: dict[str, Any], receive, send) -> None:
        item = self._received(scope, "websocket")
        self._record(item)
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.receive":
                data = message.get("bytes") or (message.get("text") or "").encode()
                with self._lock:
                    item.messages.append(data)
                await send({"type": "websocket.send", "text": f"echo {len(data)}"})
            else:
                return


# --- scanners ---------------------------------------------------------------------------------


class _Process:
    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.argv = argv
        self.log = log
        self._fh = log.open("wb")
        full_env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.proc = subprocess.Popen(argv, stdout=self._fh, stderr=subprocess.STDOUT, env={**full_env, **(env or {})}, cwd=ROOT)

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._fh.close()


class ScannerService(_Process):
    """The real scanner (``python -m scanner``) on a free loopback port."""

    def __init__(self, directory: Path):
        self.port = free_port()
        super().__init__([sys.executable, "-m", "scanner", "--host", "127.0.0.1", "--port", str(self.port)], directory / "scanner.log")
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> ScannerService:
        wait_for(self._ready, 90, "scanner", interval=0.3)
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the scanner exited ({self.proc.returncode}):\n{self.output()[-3000:]}")
        return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200


class ScannerDouble:
    """A scanner that misbehaves on purpose. Modes: clean, slow, garbage, status500; stop() to go away."""

    CLEAN = {"verdict": "clean", "findings": [], "errors": [], "bytes_scanned": 0, "scan_ms": 0.0}

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "clean"
        self.slow_seconds = 3.0
        self.calls = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name="scanner-double", daemon=True)
        self._started = threading.Event()

    def start(self) -> ScannerDouble:
        self._thread.start()
        self._started.wait(10)
        return self

    def _serve(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            app = web.Application()
            app.router.add_post("/v1/scan", self._scan)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            self._started.set()
            while self._runner is not None:
                await asyncio.sleep(0.05)

        asyncio.run(main())

    async def _scan(self, request: web.Request) -> web.Response:
        await request.read()
        self.calls += 1
        if self.mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        if self.mode == "garbage":
            return web.Response(body=b"\x00\xffnot an answer", content_type="application/json")
        if self.mode == "status500":
            return web.Response(status=500, body=json.dumps(self.CLEAN).encode(), content_type="application/json")
        return web.Response(body=json.dumps(self.CLEAN).encode(), content_type="application/json")

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        runner, self._runner = self._runner, None
        asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
        self._thread.join(timeout=10)


# --- the proxy ------------------------------------------------------------------------------------

LOOPBACK_POLICY = """\
apiVersion: yolo-cage.dev/v1alpha1
kind: Policy
destinations:
  ports: [80, 443, {ports}]
  unsafe_host_overrides: {{sink.test: 127.0.0.1, pastebin.com: 127.0.0.1}}
{extra_destinations}scan:
  deadline_ms: {deadline_ms}
{extra_scan}"""


class Proxy(_Process):
    """A real mitmdump with the addon, listening on a free loopback port."""

    def __init__(
        self,
        directory: Path,
        scanner_url: str,
        sink: Sink,
        upstream_ca: Path,
        *,
        private_networks: bool = True,
        deadline_ms: int = 2000,
        extra_destinations: str = "",
        extra_scan: str = "",
        addon: bool = True,
        policy_text: str | None = None,
        extra_ports: tuple[int, ...] = (),
        placeholders: dict[str, str] | None = None,
        credentials: dict[str, str] | None = None,
    ):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.port = free_port()
        self.sink = sink
        self.confdir = directory / "conf"
        self.audit_path = directory / "audit.jsonl"
        extra = "  unsafe_allow_private_networks: [127.0.0.0/8]\n" if private_networks else ""
        policy = policy_text or LOOPBACK_POLICY.format(
            ports=", ".join(str(p) for p in (sink.http_port, sink.https_port, *extra_ports)),
            extra_destinations=extra + extra_destinations,
            deadline_ms=deadline_ms,
            extra_scan=extra_scan,
        )
        (directory / "policy.yaml").write_text(policy)
        agent: dict[str, Any] = {"token_sha256": hash_token(TOKEN), "credentials": placeholders or {}}
        (directory / "agents.json").write_text(json.dumps({AGENT: agent}))
        values = directory / "credentials"  # the real values (binding name -> value), for injection
        values.mkdir(exist_ok=True)
        for name, value in (credentials or {}).items():
            (values / name).write_text(value + "\n")
        argv = [str(MITMDUMP), "--listen-host", "127.0.0.1", "--listen-port", str(self.port), "--set", "flow_detail=0"]
        argv += ["--set", f"confdir={self.confdir}", "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
        argv += ["--set", "connection_strategy=lazy", "--set", "onboarding=false"]
        if addon:
            argv += [
                "-s", str(ROOT / "addon" / "entry.py"),
                "--set", f"yolo_cage_policy={directory / 'policy.yaml'}",
                "--set", f"yolo_cage_agents={directory / 'agents.json'}",
                "--set", f"yolo_cage_scanner={scanner_url}",
                "--set", f"yolo_cage_audit_log={self.audit_path}",
                "--set", f"yolo_cage_credentials={values}",
            ]
        super().__init__(argv, directory / "mitmdump.log")
        self.addon = addon

    @property
    def url(self) -> str:
        return f"http://{AGENT}:{TOKEN}@127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def start(self) -> Proxy:
        wait_for(self._ready, 30, "mitmdump", interval=0.2)
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"mitmdump exited ({self.proc.returncode}):\n{self.output()[-3000:]}")
        if not self.addon:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self.ca_file.exists()
        with httpx.Client(proxy=f"http://127.0.0.1:{self.port}", timeout=2) as client:
            return client.get("http://yolo-cage.internal/healthz").status_code == 200

    def client(self, *, http2: bool = False, auth: bool = True, timeout: float = 15) -> httpx.Client:
        proxy = self.url if auth else f"http://127.0.0.1:{self.port}"
        verify = self.ssl_context(prefer_h2=http2)
        return httpx.Client(proxy=proxy, verify=verify, http2=http2, timeout=timeout, trust_env=False)

    def ssl_context(self, prefer_h2: bool = False) -> ssl.SSLContext:
        ctx = (_H2First if prefer_h2 else ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(self.ca_file))
        return ctx

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def tunnel(self, host: str, port: int, *, auth: bool = True) -> socket.socket:
        """A raw socket after a successful CONNECT (raises with the status line otherwise)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        creds = base64.b64encode(f"{AGENT}:{TOKEN}".encode()).decode()
        head = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        if auth:
            head += f"Proxy-Authorization: Basic {creds}\r\n"
        sock.sendall((head + "\r\n").encode())
        answer = _read_head(sock)
        if not answer.startswith(b"HTTP/1.1 200"):
            sock.close()
            raise ConnectionError(answer.decode(errors="replace"))
        return sock


class _H2First(ssl.SSLContext):
    """httpx offers ALPN ["http/1.1", "h2"]; mitmproxy (lazy, no server yet) takes the client's first
    choice. Browsers, curl and Node offer h2 first: so does this context."""

    def set_alpn_protocols(self, protocols) -> None:  # type: ignore[no-untyped-def, override]
        super().set_alpn_protocols(sorted(protocols, key=lambda p: p != "h2"))


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def started(*things: Any) -> Iterator[Any]:
    """Start things in order; stop them in reverse at the end (for fixtures)."""
    done = []
    try:
        for thing in things:
            done.append(thing.start())
        yield done
    finally:
        for thing in reversed(done):
            thing.stop()


class RawSink:
    """A plain TCP server that records every byte it receives (for raw-tunnel tests).

    With ``switch=True`` it first answers any HTTP request with ``101 Switching
    Protocols`` to a made-up protocol, as an attacker's server would to open a
    raw channel through an HTTP proxy, and records what follows.
    """

    def __init__(self, switch: bool = False) -> None:
        self.switch = switch
        self.port = free_port()
        self.data = bytearray()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="raw-sink", daemon=True)

    def start(self) -> RawSink:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while self._running:
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    if self.switch:
                        _read_head(conn)
                        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: rawproto\r\nConnection: Upgrade\r\n\r\n")
                    while chunk := conn.recv(4096):
                        self.data += chunk
                        conn.sendall(b"ack")
                except OSError:
                    pass

    def stop(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._server.close()


class ControlFrameSink:
    """A WebSocket server (wsproto on plain TCP) that records every frame, control frames included.

    hypercorn answers pings itself and never shows them to the app; this one
    writes down pings, pongs, close codes and reasons, and messages.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.frames: list[tuple[str, object]] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="ws-control-sink", daemon=True)

    def start(self) -> ControlFrameSink:
        self._thread.start()
        return self

    def saw(self, needle: bytes) -> bool:
        return any(needle in (v if isinstance(v, bytes) else str(v).encode()) for _, v in list(self.frames))

    def _serve(self) -> None:
        while self._running:
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        import wsproto
        import wsproto.events as ev

        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        with conn:
            conn.settimeout(10)
            try:
                while data := conn.recv(65536):
                    ws.receive_data(data)
                    for event in ws.events():
                        out = self._answer(event, ev)
                        if out is not None:
                            conn.sendall(ws.send(out))
                        if isinstance(event, ev.CloseConnection):
                            return
            except OSError:
                return

    def _answer(self, event: object, ev: Any) -> object | None:
        if isinstance(event, ev.Request):
            return ev.AcceptConnection()
        if isinstance(event, ev.TextMessage):
            self.frames.append(("text", event.data.encode()))
            return ev.TextMessage(data=f"echo {len(event.data)}")
        if isinstance(event, ev.Ping):
            self.frames.append(("ping", bytes(event.payload)))
            return event.response()
        if isinstance(event, ev.Pong):
            self.frames.append(("pong", bytes(event.payload)))
            return None
        if isinstance(event, ev.CloseConnection):
            self.frames.append(("close", f"{event.code} {event.reason or ''}".strip()))
            return event.response()
        return None

    def stop(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._server.close()
