"""The proxy for real: mitmdump with the addon, the real scanner, a loopback sink.

Every "blocked" test has its paired control through the same path: the same
request without the secret reaches the sink, so a broken network cannot pass
for a block. The sink answers to "sink.test" and to "pastebin.com" (both
pinned to 127.0.0.1 by the test policy): a block that failed would land on it,
never on a real outside host. Loopback is a private range, so these proxies
run with ``unsafe_allow_private_networks: [127.0.0.0/8]``; one test shows the
same request is refused without it.
"""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import socket
import string
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import brotli
import httpx
import pytest
import websockets.exceptions
import websockets.sync.client
import zstandard

from tests.integration.proxy_live_support import (
    AGENT,
    LOOPBACK_POLICY,
    TOKEN,
    ControlFrameSink,
    Proxy,
    RawSink,
    ScannerDouble,
    ScannerService,
    Sink,
    TestCA,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SECRETS_USED: list[str] = []


def github_token() -> str:
    token = "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
    SECRETS_USED.append(token)
    return token


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy-live")


@pytest.fixture(scope="module")
def ca(workdir: Path) -> TestCA:
    return TestCA(workdir / "ca")


@pytest.fixture(scope="module")
def sink(ca: TestCA) -> Iterator[Sink]:
    s = Sink(ca).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def scanner(workdir: Path) -> Iterator[ScannerService]:
    s = ScannerService(workdir)
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def proxy(workdir: Path, scanner: ScannerService, sink: Sink, ca: TestCA) -> Iterator[Proxy]:
    p = Proxy(workdir / "proxy", scanner.url, sink, ca.ca_file)
    try:
        yield p.start()
    finally:
        p.stop()


@pytest.fixture(scope="module")
def double() -> Iterator[ScannerDouble]:
    d = ScannerDouble().start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def fault_proxy(workdir: Path, double: ScannerDouble, sink: Sink, ca: TestCA) -> Iterator[Proxy]:
    p = Proxy(workdir / "fault-proxy", double.url, sink, ca.ca_file, deadline_ms=500)
    try:
        yield p.start()
    finally:
        p.stop()


@pytest.fixture(autouse=True)
def _fresh_sink(sink: Sink) -> None:
    sink.clear()


def assert_blocked(response: httpx.Response, reason: str) -> dict:
    assert response.status_code == 403, response.text
    assert response.headers["X-Yolo-Cage-Block"] == reason
    body = response.json()
    assert body["blocked"] is True and body["reason"] == reason and body["request_id"]
    return body


def audit_line(proxy: Proxy, request_id: str) -> dict:
    wait_for(lambda: any(line["request_id"] == request_id for line in proxy.audit()), 5, f"audit line {request_id}")
    return next(line for line in proxy.audit() if line["request_id"] == request_id)


# --- channels: a secret is blocked, the same request without it goes through ------------------------


@dataclass(frozen=True)
class Channel:
    id: str
    build: Callable[[str], dict]  # value -> httpx request kwargs (method, path, headers, content...)
    scheme: str = "http"
    http2: bool = False
    decode: Callable[[bytes], bytes] | None = None  # how to read a compressed body at the sink


def _json_body(value: str) -> dict:
    return {"method": "POST", "path": "/upload", "json": {"note": value}}


def _encoded(encoding: str, compress: Callable[[bytes], bytes]) -> Callable[[str], dict]:
    def build(value: str) -> dict:
        return {"method": "POST", "path": "/upload", "headers": {"Content-Encoding": encoding},
                "content": compress(json.dumps({"note": value}).encode())}

    return build


CHANNELS = [
    Channel("body-json", _json_body),
    Channel("body-form", lambda v: {"method": "POST", "path": "/form", "data": {"field": v}}),
    Channel("query", lambda v: {"method": "GET", "path": "/search", "params": {"q": v}}),
    Channel("path", lambda v: {"method": "GET", "path": f"/files/{v}"}),
    Channel("header-authorization", lambda v: {"method": "GET", "path": "/", "headers": {"Authorization": f"Bearer {v}"}}),
    Channel("header-x-api-key", lambda v: {"method": "GET", "path": "/", "headers": {"X-Api-Key": v}}),
    Channel("header-user-agent", lambda v: {"method": "GET", "path": "/", "headers": {"User-Agent": f"tool/1.0 ({v})"}}),
    Channel("header-referer", lambda v: {"method": "GET", "path": "/", "headers": {"Referer": f"https://docs.example/?t={v}"}}),
    Channel("cookie", lambda v: {"method": "GET", "path": "/", "headers": {"Cookie": f"theme=dark; session={v}"}}),
    Channel("multipart", lambda v: {"method": "POST", "path": "/upload", "files": {"file": ("notes.txt", f"key = {v}\n".encode())}}),
    Channel("body-gzip", _encoded("gzip", gzip.compress), decode=gzip.decompress),
    Channel("body-br", _encoded("br", brotli.compress), decode=brotli.decompress),
    Channel("body-zstd", _encoded("zstd", zstandard.ZstdCompressor().compress), decode=lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)),
    Channel("https-body", _json_body, scheme="https"),
    Channel("https-header", lambda v: {"method": "GET", "path": "/", "headers": {"X-Api-Key": v}}, scheme="https"),
    Channel("https-query", lambda v: {"method": "GET", "path": "/search", "params": {"q": v}}, scheme="https"),
    Channel("http2-body", _json_body, scheme="https", http2=True),
    Channel("http2-header", lambda v: {"method": "GET", "path": "/", "headers": {"X-Api-Key": v}}, scheme="https", http2=True),
]


def send(proxy: Proxy, sink: Sink, channel: Channel, value: str, host: str = "sink.test") -> tuple[httpx.Response, str]:
    nonce = uuid.uuid4().hex
    kw = channel.build(value)
    port = sink.https_port if channel.scheme == "https" else sink.http_port
    url = f"{channel.scheme}://{host}:{port}{kw.pop('path')}"
    headers = {"X-Test-Id": nonce, **kw.pop("headers", {})}
    with proxy.client(http2=channel.http2) as client:
        response = client.request(kw.pop("method"), url, headers=headers, **kw)
    if channel.http2:
        assert response.http_version == "HTTP/2"
    return response, nonce


@pytest.mark.parametrize("channel", CHANNELS, ids=[c.id for c in CHANNELS])
def test_a_secret_in_each_channel_is_blocked_and_the_same_request_without_it_passes(proxy: Proxy, sink: Sink, channel: Channel) -> None:
    secret = github_token()
    blocked, nonce = send(proxy, sink, channel, secret)
    body = assert_blocked(blocked, "secret-detected")
    time.sleep(0.2)
    assert not sink.saw(nonce) and not sink.saw(secret), "the sink received a blocked request"
    line = audit_line(proxy, body["request_id"])
    assert line["decision"] == "block" and line["findings"] and line["findings"][0]["fingerprint"]
    assert secret not in json.dumps(line)

    control, nonce = send(proxy, sink, channel, "hello-world-control")
    assert control.status_code == 200, control.text
    [received] = [r for r in sink.snapshot() if r.header("x-test-id") == nonce]
    raw = received.raw() if channel.decode is None else channel.decode(received.body)
    assert b"hello-world-control" in raw


def test_http2_reaches_the_sink_as_http2(proxy: Proxy, sink: Sink) -> None:
    response, nonce = send(proxy, sink, CHANNELS[-2], "plain words")
    assert response.status_code == 200 and response.http_version == "HTTP/2"
    [received] = [r for r in sink.snapshot() if r.header("x-test-id") == nonce]
    assert received.http_version == "2" and received.header("host") in (None, f"sink.test:{sink.https_port}")


def test_websocket_client_messages_are_scanned(proxy: Proxy, sink: Sink) -> None:
    secret = github_token()
    for scheme, port, ctx in (("ws", sink.http_port, None), ("wss", sink.https_port, proxy.ssl_context())):
        sink.clear()
        nonce = uuid.uuid4().hex
        with websockets.sync.client.connect(f"{scheme}://sink.test:{port}/ws", proxy=proxy.url, ssl=ctx, open_timeout=10) as ws:
            ws.send(f"hello {nonce}")
            assert ws.recv(timeout=5).startswith("echo")  # the control passes through the same channel
            ws.send(f"here is the token {secret}")
            wait_for(lambda: any(l["kind"] == "websocket" and l["decision"] == "block" and l["reason"] == "secret-detected"
                                 and l["port"] == port for l in proxy.audit()), 5, "websocket block in the audit log")
            # The proxy closes the WebSocket: the client gets a close frame, nothing after it goes out.
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                ws.recv(timeout=5)
            assert ws.close_code == 1000
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                ws.send(f"after {nonce}")
        time.sleep(0.2)
        [received] = [r for r in sink.snapshot() if r.kind == "websocket"]
        assert received.messages == [f"hello {nonce}".encode()]
        assert not sink.saw(secret)


def test_websocket_control_frames_carry_nothing_of_the_clients(workdir: Path, scanner: ScannerService, sink: Sink, ca: TestCA) -> None:
    frames = ControlFrameSink().start()
    p = Proxy(workdir / "ws-control", scanner.url, sink, ca.ca_file, extra_ports=(frames.port,)).start()
    secret = github_token().encode()
    try:
        with websockets.sync.client.connect(f"ws://sink.test:{frames.port}/", proxy=p.url, open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "echo 5"  # the channel works
            pong = ws.ping(secret[:100])
            assert pong.wait(5)  # the keep-alive still gets its own payload back
            ws.pong(secret[:100])  # unsolicited
            ws.close(code=4000, reason=secret.decode())
        wait_for(lambda: any(kind == "close" for kind, _ in frames.frames), 5, "the close frame at the sink")
        kinds = [kind for kind, _ in frames.frames]
        assert kinds == ["text", "ping", "pong", "close"]
        assert dict(frames.frames)["close"] == "1000" and dict(frames.frames)["pong"] == b""
        assert not frames.saw(secret[:20])
    finally:
        p.stop()
        frames.stop()


def test_the_clients_alpn_offers_do_not_reach_the_upstream(workdir: Path, scanner: ScannerService, sink: Sink, ca: TestCA) -> None:
    hello = RawSink().start()  # records the proxy's TLS ClientHello (cleartext) and nothing more
    p = Proxy(workdir / "alpn", scanner.url, sink, ca.ca_file, extra_ports=(hello.port,)).start()
    marker = "alpn-" + uuid.uuid4().hex
    try:
        ctx = p.ssl_context()
        ctx.set_alpn_protocols(["http/1.1", marker])
        with ctx.wrap_socket(p.tunnel("sink.test", hello.port), server_hostname="sink.test") as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: sink.test:{hello.port}\r\n\r\n".encode())
            tls.settimeout(10)
            try:
                tls.recv(4096)  # a 502: the raw sink does not speak TLS
            except OSError:
                pass
        wait_for(lambda: b"sink.test" in hello.data, 5, "the upstream ClientHello")
        assert b"http/1.1" in hello.data  # the ClientHello did arrive, with the HTTP offer
        assert marker.encode() not in hello.data
    finally:
        p.stop()
        hello.stop()


def test_connect_with_tls_to_a_blocked_site_is_refused_before_connecting(proxy: Proxy, sink: Sink) -> None:
    with pytest.raises(ConnectionError, match="403"):
        proxy.tunnel("pastebin.com", sink.https_port)
    with pytest.raises(httpx.ProxyError):
        with proxy.client() as client:
            client.get(f"https://pastebin.com:{sink.https_port}/")
    with proxy.client() as client:
        assert_blocked(client.get(f"http://www.PasteBin.com.:{sink.http_port}/"), "blocklisted-host")
        control = client.get(f"https://sink.test:{sink.https_port}/")
    assert control.status_code == 200
    assert [r.header("host") for r in sink.snapshot()] == [f"sink.test:{sink.https_port}"]


def _tls_request(proxy: Proxy, sink: Sink, sni: str, host_header: str) -> bytes:
    sock = proxy.tunnel("sink.test", sink.https_port)
    ctx = proxy.ssl_context()
    with ctx.wrap_socket(sock, server_hostname=sni) as tls:
        tls.sendall(f"GET /agree HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    ("sni", "host_header", "blocked"),
    [
        ("sink.test", "sink.test:{port}", False),
        ("sink.test", "pastebin.com:{port}", True),
        ("pastebin.com", "sink.test:{port}", True),
    ],
)
def test_connect_target_sni_and_host_header_must_agree(proxy: Proxy, sink: Sink, sni: str, host_header: str, blocked: bool) -> None:
    answer = _tls_request(proxy, sink, sni, host_header.format(port=sink.https_port))
    status = answer.split(b"\r\n", 1)[0]
    if blocked:
        assert b" 403 " in status and b"X-Yolo-Cage-Block: host-mismatch" in answer
        assert sink.snapshot() == []
    else:
        assert b" 200 " in status
        assert len(sink.snapshot()) == 1


def test_raw_tcp_through_connect_is_refused_unless_unsafe(workdir: Path, scanner: ScannerService, sink: Sink, ca: TestCA) -> None:
    raw = RawSink().start()
    proxies = {
        allowed: Proxy(workdir / f"raw-{allowed}", scanner.url, sink, ca.ca_file, extra_ports=(raw.port,),
                       extra_destinations="  unsafe_allow_raw_tunnels: true\n" if allowed else "")
        for allowed in (False, True)
    }
    try:
        for allowed, p in proxies.items():
            p.start()
            payload = b"\x00\x01RAW-PROTOCOL " + uuid.uuid4().hex.encode()
            with p.tunnel("sink.test", raw.port) as sock:
                sock.sendall(payload)
                sock.settimeout(5)
                try:
                    reply = sock.recv(100)
                except (ConnectionResetError, TimeoutError):
                    reply = b""
            time.sleep(0.3)
            assert (payload in raw.data) is allowed
            assert (reply == b"ack") is allowed
            assert p.audit()[-1]["kind"] == "tcp"
            assert p.audit()[-1]["decision"] == ("allow" if allowed else "block")
    finally:
        for p in proxies.values():
            p.stop()
        raw.stop()


def test_an_http_101_to_a_raw_protocol_is_refused_unless_unsafe(workdir: Path, scanner: ScannerService, sink: Sink, ca: TestCA) -> None:
    switcher = RawSink(switch=True).start()
    proxies = {
        allowed: Proxy(workdir / f"upgrade-{allowed}", scanner.url, sink, ca.ca_file, extra_ports=(switcher.port,),
                       extra_destinations="  unsafe_allow_raw_tunnels: true\n" if allowed else "")
        for allowed in (False, True)
    }
    try:
        for allowed, p in proxies.items():
            p.start()
            payload = b"RAW-AFTER-101 " + uuid.uuid4().hex.encode()
            creds = base64.b64encode(f"{AGENT}:{TOKEN}".encode()).decode()
            with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
                sock.sendall(
                    f"GET http://sink.test:{switcher.port}/upgrade HTTP/1.1\r\nHost: sink.test:{switcher.port}\r\n"
                    f"Proxy-Authorization: Basic {creds}\r\nUpgrade: rawproto\r\nConnection: Upgrade\r\n\r\n".encode()
                )
                status = sock.recv(4096).split(b"\r\n", 1)[0]
                try:
                    sock.sendall(payload)
                    time.sleep(0.5)
                except OSError:
                    pass
            assert (b" 101 " in status) is allowed, status
            assert (payload in switcher.data) is allowed
            line = p.audit()[-1]
            assert (line["kind"], line["decision"]) == ("tcp", "allow" if allowed else "block")
    finally:
        for p in proxies.values():
            p.stop()
        switcher.stop()


def test_loopback_is_refused_without_the_unsafe_private_networks_setting(workdir: Path, scanner: ScannerService, proxy: Proxy, sink: Sink, ca: TestCA) -> None:
    strict = Proxy(workdir / "strict", scanner.url, sink, ca.ca_file, private_networks=False).start()
    try:
        with strict.client() as client:
            assert_blocked(client.get(f"http://sink.test:{sink.http_port}/strict"), "loopback-address")
            assert_blocked(client.get(f"http://localhost:{sink.http_port}/strict"), "loopback-address")
        with pytest.raises(httpx.ProxyError):
            with strict.client() as client:
                client.get(f"https://sink.test:{sink.https_port}/strict")
        assert sink.snapshot() == []
        with proxy.client() as client:  # the same request, with the test allowance
            assert client.get(f"http://sink.test:{sink.http_port}/strict").status_code == 200
        assert len(sink.snapshot()) == 1
    finally:
        strict.stop()


def test_ip_literals_are_refused_in_every_notation(proxy: Proxy, sink: Sink) -> None:
    with proxy.client() as client:
        for host in ("127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "017700000001"):
            assert_blocked(client.get(f"http://{host}:{sink.http_port}/literal"), "ip-literal")
        assert client.get(f"http://sink.test:{sink.http_port}/literal").status_code == 200
    assert len(sink.snapshot()) == 1


def test_proxy_credentials_are_required_and_never_forwarded(proxy: Proxy, sink: Sink) -> None:
    with proxy.client(auth=False) as client:
        refused = client.get(f"http://sink.test:{sink.http_port}/auth")
    assert refused.status_code == 407 and refused.headers["X-Yolo-Cage-Block"] == "proxy-auth-required"
    assert sink.snapshot() == []
    with proxy.client() as client:
        assert client.get(f"http://sink.test:{sink.http_port}/auth").status_code == 200
    [received] = sink.snapshot()
    assert received.header("proxy-authorization") is None and not sink.saw(TOKEN)
    assert proxy.audit()[-1]["agent"] == AGENT


def test_github_api_rules_are_on_by_default(proxy: Proxy, sink: Sink) -> None:
    # api.github.com is not reachable here (and must not be): the refusal comes before any resolution.
    with proxy.client() as client:
        assert_blocked(client.delete("http://api.github.com/repos/o/r"), "request-rule")
        assert_blocked(client.put("http://api.github.com/repos/o/r/pulls/1/merge"), "request-rule")


def test_the_proxy_answers_yolo_cage_internal_itself_over_https(proxy: Proxy) -> None:
    with proxy.client() as client:
        response = client.get("https://yolo-cage.internal/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


# --- faults: everything that goes wrong with the scan blocks ------------------------------------


@pytest.mark.parametrize(("mode", "reason"), [("slow", "scanner-timeout"), ("garbage", "scanner-bad-answer"), ("status500", "scanner-status")])
def test_scanner_faults_block_and_forward_nothing(fault_proxy: Proxy, double: ScannerDouble, sink: Sink, mode: str, reason: str) -> None:
    channel = CHANNELS[0]
    try:
        double.mode = mode
        blocked, nonce = send(fault_proxy, sink, channel, "nothing secret at all")
        body = assert_blocked(blocked, reason)
        assert audit_line(fault_proxy, body["request_id"])["decision"] == "error"
        time.sleep(0.2)
        assert not sink.saw(nonce)
    finally:
        double.mode = "clean"
    control, nonce = send(fault_proxy, sink, channel, "nothing secret at all")
    assert control.status_code == 200 and sink.saw(nonce)


def test_a_stopped_scanner_blocks_everything(workdir: Path, sink: Sink, ca: TestCA) -> None:
    lonely = ScannerDouble().start()
    p = Proxy(workdir / "stopped-scanner", lonely.url, sink, ca.ca_file).start()
    try:
        control, nonce = send(p, sink, CHANNELS[0], "fine")
        assert control.status_code == 200 and sink.saw(nonce)
        lonely.stop()
        blocked, nonce = send(p, sink, CHANNELS[0], "fine")
        assert_blocked(blocked, "scanner-unreachable")
        # Through CONNECT the tunnel itself is scanned first (its target name): refused there.
        with pytest.raises(httpx.ProxyError, match="403"):
            send(p, sink, CHANNELS[-2], "fine")
        line = p.audit()[-1]
        assert (line["kind"], line["decision"], line["reason"]) == ("connect", "error", "scanner-unreachable")
        assert not sink.saw(nonce) and len(sink.snapshot()) == 1  # only the control before the stop
    finally:
        p.stop()
        lonely.stop()


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd", "x-made-up"])
def test_a_bogus_content_encoding_is_blocked(proxy: Proxy, sink: Sink, encoding: str) -> None:
    nonce = uuid.uuid4().hex
    url = f"http://sink.test:{sink.http_port}/bogus"
    with proxy.client() as client:
        blocked = client.post(url, content=b"this is not compressed at all " + nonce.encode(),
                              headers={"Content-Encoding": encoding, "X-Test-Id": nonce})
        assert_blocked(blocked, "scan-invalid")
        time.sleep(0.2)
        assert not sink.saw(nonce)
        control = client.post(url, content=gzip.compress(b"compressed " + nonce.encode()),
                              headers={"Content-Encoding": "gzip", "X-Test-Id": nonce})
    assert control.status_code == 200 and sink.saw(nonce)


def test_a_bad_policy_stops_mitmdump_at_startup(workdir: Path, scanner: ScannerService, sink: Sink, ca: TestCA) -> None:
    bad = "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\ndestinations: {ports: [0], colour: red}\n"
    p = Proxy(workdir / "bad-policy", scanner.url, sink, ca.ca_file, policy_text=bad)
    try:
        assert p.proc.wait(timeout=30) != 0
        output = p.output()
        assert "destinations.ports[0]" in output and "destinations.colour: unknown key" in output
    finally:
        p.stop()


def test_no_secret_ever_reaches_the_audit_log(proxy: Proxy, fault_proxy: Proxy) -> None:
    assert SECRETS_USED, "run with the channel tests"
    for p in (proxy, fault_proxy):
        text = p.audit_path.read_text()
        assert text and not any(secret in text for secret in SECRETS_USED)
        assert TOKEN not in text


# --- a host name that carried a finding never reaches the audit log ----------------------------------------------


def test_a_connect_target_carrying_a_secret_is_refused_and_redacted(proxy: Proxy, sink: Sink) -> None:
    secret = github_token()
    label = secret.lower()  # a host name is case-insensitive: what an exfiltration through DNS sends
    with pytest.raises(ConnectionError, match="403"):
        proxy.tunnel(f"{label}.sink.test", sink.https_port)
    line = next(line for line in reversed(proxy.audit()) if line["kind"] == "connect")
    assert (line["decision"], line["reason"], line["host"]) == ("block", "secret-detected", "<redacted>")
    assert label not in proxy.audit_path.read_text()
    proxy.tunnel("sink.test", sink.https_port).close()  # the control: the same CONNECT without the secret
    wait_for(lambda: proxy.audit()[-1]["host"] == "sink.test", 5, "the control's audit line")


# --- credentials on loopback: the sink as a bound host ------------------------------------------------------------

PLACEHOLDER = "yolo-cage-placeholder-sink-key-" + "5e" * 12
REAL_KEY = "sk-live-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
BINDING = """credentials:
  bindings:
    - name: sink-key
      source: {env: SINK_KEY}
      hosts: [sink.test]
      where: [{header: x-api-key}]
      exclusive_headers: [Authorization]
      agent_env: [SINK_KEY]
"""


def aws_file() -> str:
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits + "/+") for _ in range(40))
    SECRETS_USED.append(secret)
    return f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"


@pytest.fixture(scope="module")
def bound_proxy(workdir: Path, scanner: ScannerService, sink: Sink, ca: TestCA) -> Iterator[Proxy]:
    """sink.test is the LLM API here: bound to the key (the agent holds its placeholder), scanned in report mode."""
    policy = loopback_policy(sink, "  destinations:\n    - {hosts: [sink.test], mode: report}\n") + BINDING
    p = Proxy(workdir / "bound", scanner.url, sink, ca.ca_file, policy_text=policy,
              placeholders={"sink-key": PLACEHOLDER}, credentials={"sink-key": REAL_KEY})
    try:
        yield p.start()
    finally:
        p.stop()


def loopback_policy(sink: Sink, extra_scan: str) -> str:
    return LOOPBACK_POLICY.format(ports=f"{sink.http_port}, {sink.https_port}",
                                  extra_destinations="  unsafe_allow_private_networks: [127.0.0.0/8]\n",
                                  deadline_ms=2000, extra_scan=extra_scan)


def upload(proxy: Proxy, sink: Sink, host: str, headers: dict[str, str], content: str) -> tuple[httpx.Response, str]:
    nonce = uuid.uuid4().hex
    with proxy.client() as client:
        response = client.post(f"https://{host}:{sink.https_port}/v1/files", content=content.encode(),
                               headers={"X-Test-Id": nonce, "Content-Type": "text/plain", **headers})
    return response, nonce


@pytest.mark.parametrize(("header", "value"), [("x-api-key", "sk-ant-api03-attackersOwnKey0123456789"),
                                               ("Authorization", "Bearer sk-ant-oat01-attackersOwnToken0123")])
def test_an_attackers_own_credential_to_the_bound_host_is_refused(bound_proxy: Proxy, sink: Sink, header: str, value: str) -> None:
    """llm-api-attacker-key: ~/.aws/credentials to the report-mode API under someone else's credential."""
    refused, nonce = upload(bound_proxy, sink, "sink.test", {header: value}, aws_file())
    assert_blocked(refused, "credential-foreign")
    time.sleep(0.2)
    assert not sink.saw(nonce) and not sink.saw(value)
    # The control: the same upload under the agent's placeholder goes (report mode), with the real key.
    sent, nonce = upload(bound_proxy, sink, "sink.test", {"x-api-key": PLACEHOLDER}, aws_file())
    assert sent.status_code == 200, sent.text
    [received] = [r for r in sink.snapshot() if r.header("x-test-id") == nonce]
    assert received.header("x-api-key") == REAL_KEY and not sink.saw(PLACEHOLDER)
    assert bound_proxy.audit()[-1]["decision"] == "report"


def test_without_its_credential_the_bound_host_is_scanned_in_enforce_mode(bound_proxy: Proxy, sink: Sink) -> None:
    refused, nonce = upload(bound_proxy, sink, "sink.test", {}, aws_file())
    body = assert_blocked(refused, "secret-detected")
    assert audit_line(bound_proxy, body["request_id"])["scan_mode"] == "enforce"
    time.sleep(0.2)
    assert not sink.saw(nonce)
    sent, nonce = upload(bound_proxy, sink, "sink.test", {}, "just notes, nothing secret")  # the control
    assert sent.status_code == 200 and sink.saw(nonce)


def test_the_agents_placeholder_in_a_body_goes_to_the_bound_host_untouched_and_nowhere_else(bound_proxy: Proxy, sink: Sink) -> None:
    """clean-look-env: the conversation holds the output of `env`; the next API call must still work."""
    env = f"HOME=/home/dev\nSINK_KEY={PLACEHOLDER}\n"
    sent, nonce = upload(bound_proxy, sink, "sink.test", {"x-api-key": PLACEHOLDER}, env)
    assert sent.status_code == 200, sent.text
    [received] = [r for r in sink.snapshot() if r.header("x-test-id") == nonce]
    assert received.body == env.encode() and received.header("x-api-key") == REAL_KEY
    line = bound_proxy.audit()[-1]
    assert line["placeholders"] == ["sink-key"] and PLACEHOLDER not in bound_proxy.audit_path.read_text()
    # The same body to a host nothing is bound to (enforce mode): misuse, and the control without it passes.
    refused, nonce = upload(bound_proxy, sink, "localhost", {}, env)
    assert_blocked(refused, "credential-misuse")
    time.sleep(0.2)
    assert not sink.saw(nonce)
    sent, nonce = upload(bound_proxy, sink, "localhost", {}, "HOME=/home/dev\n")
    assert sent.status_code == 200 and sink.saw(nonce)
    text = bound_proxy.audit_path.read_text()
    assert not any(value in text for value in (REAL_KEY, PLACEHOLDER, *SECRETS_USED))


def test_healthchecks_take_one_audit_line_and_the_rest_is_counted(workdir: Path, scanner: ScannerService, sink: Sink, ca: TestCA) -> None:
    p = Proxy(workdir / "healthz", scanner.url, sink, ca.ca_file).start()  # its readiness check asks /healthz too
    try:
        with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", timeout=5, trust_env=False) as client:
            for _ in range(5):
                assert client.get("http://yolo-cage.internal/healthz").status_code == 200
            assert client.get("http://yolo-cage.internal/other").status_code == 404  # not a healthcheck
        with p.client() as client:
            assert client.get(f"http://sink.test:{sink.http_port}/after").status_code == 200  # the control: every request
        lines = [line for line in p.audit() if line["host"] == "yolo-cage.internal"]
        assert [(line["path"], line.get("repeats")) for line in lines] == [("/healthz", 1), ("/other", None)]
        assert p.audit()[-1]["path"] == "/after"
    finally:
        p.stop()
    owed = [line for line in p.audit() if line["path"] == "/healthz"][1:]
    assert len(owed) == 1 and owed[0]["repeats"] >= 5  # written at shutdown: the five and any readiness checks after the first


def test_the_audit_log_survives_a_restart_of_the_proxy(workdir: Path, scanner: ScannerService, sink: Sink, ca: TestCA) -> None:
    """What the audit volume is for: a new mitmdump on the same file appends, it never starts it over."""
    secret = github_token()
    before: list[str] = []
    for round_ in range(2):
        p = Proxy(workdir / "restarted", scanner.url, sink, ca.ca_file).start()  # the same directory, the same file
        try:
            with p.client() as client:
                control = client.get(f"http://sink.test:{sink.http_port}/round-{round_}")
                assert control.status_code == 200  # the control: the proxy works and writes
                blocked = client.get(f"http://sink.test:{sink.http_port}/leak", params={"q": secret})
                assert_blocked(blocked, "secret-detected")
        finally:
            p.stop()
        ids = [line["request_id"] for line in p.audit() if line["kind"] == "http" and line["host"] == "sink.test"]
        assert ids[: len(before)] == before and len(ids) == len(before) + 2, "earlier decisions lost at the restart"
        before = ids
    assert [line["path"] for line in p.audit() if line["host"] == "sink.test"] == ["/round-0", "/leak", "/round-1", "/leak"]
    assert secret not in p.audit_path.read_text()
