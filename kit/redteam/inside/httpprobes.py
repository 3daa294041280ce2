"""HTTP and WebSocket probes, written on raw sockets.

A library client would fix what the attack needs broken: a Host header that
disagrees with the CONNECT target or the SNI, an IP literal in decimal form,
a CONNECT to an odd port followed by raw bytes, a body that lies about its
encoding. So the request is written byte by byte, through the proxy named by
the agent's own ``HTTPS_PROXY`` / ``HTTP_PROXY`` (credential included), or
directly when the attack ignores the proxy.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct
import urllib.parse
from dataclasses import dataclass

from kit.redteam.inside import netprobes
from kit.redteam.inside import outcomes as o

MAX_BODY = 256 * 1024


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    auth: str | None  # a Proxy-Authorization header value

    @classmethod
    def from_env(cls, scheme: str = "https") -> Proxy | None:
        names = [f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"]
        url = next((os.environ[n] for n in names if os.environ.get(n)), "")
        if not url:
            return None
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        auth = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return cls(parts.hostname or "", parts.port or 8080, auth)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class Failed(Exception):
    """The exchange stopped early; ``outcome`` says how (network refusal, closed, proxy answer)."""

    def __init__(self, outcome: str, detail: str, response: Response | None = None):
        super().__init__(detail)
        self.outcome, self.detail, self.response = outcome, detail, response


def open_connection(url: urllib.parse.SplitResult, proxy: Proxy | None, timeout: float,
                    connect: str | None = None, sni: str | None = None):
    """A socket ready for the request, and whether the request-target must be absolute.

    HTTPS (or an explicit ``connect``) goes through a CONNECT tunnel, then TLS
    with ``sni``; plain HTTP through a proxy is sent in absolute form.
    """
    secure = url.scheme in ("https", "wss")
    port = url.port or (443 if secure else 80)
    first = (proxy.host, proxy.port) if proxy else (url.hostname or "", port)
    try:
        sock = netprobes.connect(first[0], first[1], timeout)
    except OSError as exc:
        raise Failed(*o.from_exception(exc)) from exc
    if proxy and (secure or connect):
        tunnel(sock, connect or f"{_authority_host(url.hostname or '')}:{port}", proxy.auth)
    if secure:
        sock = wrap_tls(sock, sni or url.hostname or "")
    return sock, bool(proxy and not secure and not connect)


def _authority_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def tunnel(sock: socket.socket, authority: str, auth: str | None) -> None:
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = read_response(sock.makefile("rb"), head_only=True)
    if response.status != 200:
        raise Failed(o.PROXY_ERROR, f"CONNECT {authority}: {response.status}", response)


def wrap_tls(sock: socket.socket, sni: str) -> ssl.SSLSocket:
    context = ssl.create_default_context()  # honours SSL_CERT_FILE: the cage CA bundle
    context.set_alpn_protocols(["http/1.1"])
    try:
        return context.wrap_socket(sock, server_hostname=sni)
    except (OSError, ssl.SSLError) as exc:
        raise Failed(*o.from_exception(exc)) from exc


def send_request(sock, method: str, target: str, headers: list[tuple[str, str]], body: bytes, chunked: bool) -> None:
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        half = len(body) // 2
        body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (body[:half], body[half:]) if p) + b"0\r\n\r\n"
    elif body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    except OSError as exc:
        raise Failed(*o.from_exception(exc)) from exc


def read_response(reader, head_only: bool = False) -> Response:
    """Read one answer from a buffered reader (``sock.makefile("rb")``), kept for what follows."""
    try:
        status_line = reader.readline(65536)
        if not status_line:
            raise Failed(o.CLOSED, "connection closed before any answer")
        parts = status_line.decode("latin-1").split(" ", 2)
        status = int(parts[1])
        headers = _read_headers(reader)
        if head_only:
            return Response(status, headers, b"")
        return Response(status, headers, _read_body(reader, headers))
    except (OSError, ValueError, IndexError) as exc:
        outcome, detail = o.from_exception(exc) if isinstance(exc, OSError) else (o.CLOSED, f"bad answer: {exc}")
        raise Failed(outcome, detail) from exc


def _read_headers(reader) -> list[tuple[str, str]]:
    headers = []
    while True:
        line = reader.readline(65536).decode("latin-1").rstrip("\r\n")
        if not line:
            return headers
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))


def _read_body(reader, headers: list[tuple[str, str]]) -> bytes:
    lookup = {k.lower(): v for k, v in headers}
    if "chunked" in lookup.get("transfer-encoding", "").lower():
        out = b""
        while len(out) < MAX_BODY:
            size = int(reader.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            out += reader.read(size)
            reader.readline(16)
        return out
    if "content-length" in lookup:
        return reader.read(min(int(lookup["content-length"]), MAX_BODY))
    return reader.read(MAX_BODY)


def judge(response: Response, signature: dict, via_proxy: bool) -> str:
    """Who answered: the proxy refusing, the proxy failing upstream, the target, or somebody."""
    if response.header("x-yolo-cage-block") is not None:
        return o.PROXY_BLOCK
    if matches(response, signature):
        return o.DELIVERED
    # mitmproxy's own refusals (400 malformed, 407) and upstream failures (502-504).
    if via_proxy and response.status in (400, 407, 502, 503, 504):
        return o.PROXY_ERROR
    return o.ANSWERED


def matches(response: Response, signature: dict) -> bool:
    if "header" in signature and response.header(signature["header"]) is None:
        return False
    if "body" in signature and signature["body"].encode() not in response.body:
        return False
    if "status" in signature and response.status != signature["status"]:
        return False
    return bool(signature)


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """A client frame: FIN, text or binary, masked as RFC 6455 requires of clients."""
    head = bytes([0x80 | (2 if binary else 1)])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read(reader) -> tuple[int, bytes]:
    """One server frame: (opcode, payload). Server frames are not masked."""
    head = _read_exactly(reader, 2)
    size = head[1] & 0x7F
    if size == 126:
        size = struct.unpack("!H", _read_exactly(reader, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", _read_exactly(reader, 8))[0]
    return head[0] & 0x0F, _read_exactly(reader, min(size, MAX_BODY))


def _read_exactly(reader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise EOFError("connection closed")
    return data
