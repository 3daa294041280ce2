"""The HTTP call to the scanner: one POST per request over a pool of kept-alive connections.

A small HTTP/1.1 client of its own, for one endpoint of our own service: the
proxy waits for this call on every request, and a general-purpose client
(aiohttp's) spent about 0.15 ms of Python per call on features this path never
uses (cookies, redirects, tracing). What it does accept is strict: a status
line, headers within 64 KiB, a body framed by Content-Length, chunked or the
connection's close, at most 4 MiB. Anything else is a bad answer.

Every way the call can go wrong comes back as a :class:`ScanFailure` (never an
exception), so the caller cannot forget to fail closed. A connection is reused
only after a complete answer; on a timeout or any error it is closed. A request
that met a kept-alive connection the scanner had already closed is sent once
more on a new one (a scan has no side effects).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from addon.scanning import Outcome, ScanFailure, parse_response

_MAX_ANSWER = 4 * 1024 * 1024  # a scanner answer is small; more is not a valid answer
_MAX_HEAD = 64 * 1024


class BadAnswer(Exception):
    """The scanner's answer is not HTTP this client accepts."""


class _Stale(Exception):
    """A kept-alive connection was closed by the scanner before any answer came."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @property
    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, head: bytes, payload: bytes, reused: bool) -> tuple[int, bytes, bool]:
        """Send one request; the status, body and whether the connection may be kept."""
        self.writer.writelines((head, payload))
        try:
            await self.writer.drain()
            answer_head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise BadAnswer("the answer's headers are too large") from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if reused and not getattr(exc, "partial", b""):
                raise _Stale from exc
            raise
        return await _read_answer(self.reader, answer_head)


async def _read_answer(reader: asyncio.StreamReader, head: bytes) -> tuple[int, bytes, bool]:
    status_line, _, header_lines = head[:-4].partition(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit() or rest[3:4] not in (b" ", b""):
        raise BadAnswer("not an HTTP/1.x status line")
    fields = _fields(header_lines)
    keep = version == b"HTTP/1.1" and fields.get(b"connection", b"").lower() != b"close"
    body = await _read_body(reader, fields)
    return int(code), body, keep and (b"content-length" in fields or b"transfer-encoding" in fields)


def _fields(lines: bytes) -> dict[bytes, bytes]:
    """The framing headers (lower-case names); a repeated or malformed one is a bad answer."""
    fields: dict[bytes, bytes] = {}
    for line in lines.split(b"\r\n") if lines else ():
        name, sep, value = line.partition(b":")
        name = name.lower()
        if not sep or not name or name != name.strip():
            raise BadAnswer("a malformed header line")
        if name in (b"content-length", b"transfer-encoding", b"connection"):
            if name in fields:
                raise BadAnswer(f"{name.decode()} twice")
            fields[name] = value.strip()
    return fields


async def _read_body(reader: asyncio.StreamReader, fields: dict[bytes, bytes]) -> bytes:
    if b"transfer-encoding" in fields:
        if fields[b"transfer-encoding"].lower() != b"chunked" or b"content-length" in fields:
            raise BadAnswer("an unsupported transfer encoding")
        return await _read_chunked(reader)
    if b"content-length" in fields:
        length = fields[b"content-length"]
        if not length.isdigit() or int(length) > _MAX_ANSWER:
            raise BadAnswer("the answer is too large" if length.isdigit() else "a malformed Content-Length")
        return await reader.readexactly(int(length))
    body = await reader.read(_MAX_ANSWER + 1)  # delimited by the connection's close
    while len(body) <= _MAX_ANSWER and (more := await reader.read(_MAX_ANSWER + 1 - len(body))):
        body += more
    if len(body) > _MAX_ANSWER:
        raise BadAnswer("the answer is too large")
    return body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = (await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise BadAnswer("a malformed chunk size") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return bytes(body)
        if len(body) + size > _MAX_ANSWER:
            raise BadAnswer("the answer is too large")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise BadAnswer("a malformed chunk")


class ScannerClient:
    def __init__(self, base_url: str, connections: int = 64):
        self.url = base_url.rstrip("/") + "/v1/scan"
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            # The scanner sits on its own internal network with the proxy alone: plain HTTP.
            raise ValueError(f"not an http:// URL: {base_url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()
        self._limit = connections
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Connection] = []

    async def scan(self, payload: bytes, deadline_s: float) -> Outcome:
        try:
            async with asyncio.timeout(deadline_s):
                status, body = await self._call(payload)
        except TimeoutError:
            return ScanFailure("scanner-timeout", f"the scanner did not answer within {deadline_s * 1000:.0f} ms")
        except BadAnswer as exc:
            return ScanFailure("scanner-bad-answer", f"the scanner's answer is not valid HTTP ({exc})")
        except asyncio.IncompleteReadError:
            return ScanFailure("scanner-bad-answer", "the scanner's answer ended early")
        except asyncio.LimitOverrunError:
            return ScanFailure("scanner-bad-answer", "the scanner's answer has an overlong line")
        except _Stale:
            return ScanFailure("scanner-unreachable", "the scanner closed the connection")
        except OSError as exc:
            return ScanFailure("scanner-unreachable", f"the scanner could not be reached ({exc.strerror or type(exc).__name__})")
        return parse_response(status, body)

    async def _call(self, payload: bytes) -> tuple[int, bytes]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        head = self._head + b"%d\r\n\r\n" % len(payload)
        async with self._slots:
            try:
                return await self._once(head, payload, self._idle_connection())
            except _Stale:
                return await self._once(head, payload, None)

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                return conn
            conn.close()
        return None

    async def _once(self, head: bytes, payload: bytes, conn: _Connection | None) -> tuple[int, bytes]:
        reused = conn is not None
        if conn is None:
            reader, writer = await asyncio.open_connection(self._host, self._port, limit=_MAX_HEAD)
            conn = _Connection(reader, writer)
        try:
            status, body, keep = await conn.exchange(head, payload, reused)
        except BaseException:
            conn.close()  # half a conversation is never reused (a timeout cancels us here too)
            raise
        if keep:
            self._idle.append(conn)
        else:
            conn.close()
        return status, body

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
