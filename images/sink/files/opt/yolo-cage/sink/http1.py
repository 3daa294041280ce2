"""HTTP/1.x requests: parse one from a Stream, write a response."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .stream import Stream

MAX_BODY = 64 * 1024 * 1024


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw: bytes = b""
    extra: dict = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def keep_alive(self) -> bool:
        conn = self.header("connection").lower()
        return conn != "close" if self.version == "HTTP/1.1" else conn == "keep-alive"


def parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"not an HTTP request line: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return parts[0], parts[1], parts[2], headers


async def read_request(stream: Stream) -> Request | None:
    """The next request on the stream, or None when the peer closed cleanly between requests."""
    if not await stream.peek(1):
        return None
    start = stream.mark()
    head = await stream.read_until(b"\r\n\r\n")
    method, target, version, headers = parse_head(head[:-4])
    request = Request(method, target, version, headers)
    if "chunked" in request.header("transfer-encoding").lower():
        request.body = await _read_chunked(stream)
    else:
        length = int(request.header("content-length", "0") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError(f"content-length {length} out of range")
        request.body = await stream.read_exactly(length)
    request.raw = stream.raw_since(start)
    return request


async def _read_chunked(stream: Stream) -> bytes:
    body = bytearray()
    while True:
        size_line = await stream.read_until(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            await stream.read_until(b"\r\n")  # trailers (ignored) end with an empty line
            return bytes(body)
        body += await stream.read_exactly(size)
        await stream.read_exactly(2)
        if len(body) > MAX_BODY:
            raise ValueError("chunked body too large")


def response(status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] = ()) -> bytes:
    reason = {101: "Switching Protocols", 200: "OK", 400: "Bad Request"}.get(status, "OK")
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(payload: dict, status: int = 200) -> bytes:
    return response(status, json.dumps(payload).encode(), "application/json")
