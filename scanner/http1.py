"""A small, strict HTTP/1.1 server on asyncio.Protocol: the scanner's transport.

The proxy calls the scanner on every request it forwards, over kept-alive
connections; a general-purpose server (aiohttp's) spent about 0.1-0.16 ms of
Python per call on features this path never uses. This one does only what the
scanner needs, and refuses the rest:

- :class:`Parser` is sans-IO: bytes in, :class:`Request` (or :data:`CONTINUE`)
  out, a :class:`ProtocolError` for anything RFC 9112 does not allow or that is
  past a limit. Heads are at most ``max_head`` bytes; bodies are framed by
  Content-Length or chunked (no other transfer coding), at most ``max_body``.
- :class:`Server` runs a handler per request. A handler returns a
  :class:`Response`, or an awaitable of one (then reading pauses until it is
  answered, so pipelined requests are answered in order and a client cannot
  pile up work). Every protocol error is answered (JSON) and the connection
  closed, after draining what the client is still sending (lingering close:
  else its send fails on a reset before it reads the answer).
- Timeouts: a request must arrive whole within ``request_timeout`` of its first
  byte; a kept-alive connection idle for ``idle_timeout`` is closed.

Nothing here logs a request's body or a header value.
"""

from __future__ import annotations

import asyncio
import logging
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("scanner.http1")

MAX_HEAD = 64 * 1024
MAX_FIELDS = 100
MAX_CHUNK_LINE = 4096
REQUEST_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 75.0
LINGER_S = 5.0
SHUTDOWN_GRACE_S = 10.0

_TCHAR = (string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~").encode()
_VCHAR = bytes(range(0x21, 0x7F))
_FIELD_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))  # value: VCHAR, SP, HTAB, obs-text
_HEX = b"0123456789abcdefABCDEF"
_VERSIONS = {b"HTTP/1.1": "HTTP/1.1", b"HTTP/1.0": "HTTP/1.0"}
_REASONS = {100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 413: "Content Too Large", 417: "Expectation Failed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable", 505: "HTTP Version Not Supported"}
_CONTINUE_LINE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(slots=True)
class Request:
    method: str
    target: str
    path: str  # the target without its query
    version: str
    headers: list[tuple[bytes, bytes]]  # names lower-case, in order
    keep_alive: bool
    body: bytes = b""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class _Continue:
    """Returned by Parser.next when the client waits for `100 Continue` before sending its body."""


CONTINUE = _Continue()


class ProtocolError(Exception):
    """The request cannot be served; answer `status` with `code` and close the connection."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _bad(detail: str) -> ProtocolError:
    return ProtocolError(400, "bad-request", detail)


def _too_large(limit: int) -> ProtocolError:
    return ProtocolError(413, "too-large", f"the request body is larger than {limit} bytes")


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER = range(6)


class Parser:
    """Sans-IO request parser: feed() bytes, then call next() until it returns None.

    The buffer is the last fed `bytes` object itself while it is consumed
    (no copy for a request that arrives in one read), a bytearray only when a
    request spans reads. After a ProtocolError the parser is unusable.
    """

    __slots__ = ("max_head", "max_body", "_buf", "_pos", "_scanned", "_state", "_req", "_parts", "_size",
                 "_remaining", "_trailer")

    def __init__(self, max_body: int, max_head: int = MAX_HEAD):
        self.max_head, self.max_body = max_head, max_body
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._scanned = 0  # head bytes already searched for the end of the head
        self._state = _HEAD
        self._req: Request | None = None
        self._parts: list[bytes] = []
        self._size = 0  # body bytes so far (chunked)
        self._remaining = 0  # body or chunk bytes still to come
        self._trailer = 0  # trailer bytes so far

    def feed(self, data: bytes) -> None:
        if self._pos >= len(self._buf):
            self._buf, self._pos, self._scanned = data, 0, 0
            return
        if self._pos or isinstance(self._buf, bytes):
            self._scanned -= self._pos
            self._buf, self._pos = bytearray(memoryview(self._buf)[self._pos:]), 0
        self._buf += data  # type: ignore[operator]  # a bytearray here

    @property
    def idle(self) -> bool:
        """Between requests with nothing of the next one received."""
        return self._state == _HEAD and self._pos >= len(self._buf)

    def next(self) -> Request | _Continue | None:
        if self._state == _HEAD:
            started = self._head()
            if started is not None:
                return started
            if self._state == _HEAD:
                return None
        if self._state == _LENGTH:
            self._take(self._remaining)
            if self._remaining:
                return None
            return self._finish()
        return self._chunked()

    def _head(self) -> Request | _Continue | None:
        buf, pos = self._buf, self._pos
        if buf[pos:pos + 2] == b"\r\n":  # RFC 9112 2.2: ignore one empty line before a request line
            pos = self._pos = pos + 2
            self._scanned = max(self._scanned, pos)
        end = buf.find(b"\r\n\r\n", max(pos, self._scanned - 3))
        if end < 0:
            if buf.find(b"\n\n", max(pos, self._scanned - 1)) >= 0 or buf[pos:pos + 1] == b"\n":
                raise _bad("a line ends with a bare LF")
            if len(buf) - pos > self.max_head:
                raise ProtocolError(431, "headers-too-large", f"the request head is larger than {self.max_head} bytes")
            self._scanned = len(buf)
            return None
        if end - pos > self.max_head:
            raise ProtocolError(431, "headers-too-large", f"the request head is larger than {self.max_head} bytes")
        head = bytes(buf[pos:end])
        self._pos = self._scanned = end + 4
        if self._pos >= len(buf):
            self._buf, self._pos, self._scanned = b"", 0, 0
        req, length, chunked, expect = _parse_head(head, self.max_body)
        self._req = req
        if chunked:
            self._state, self._size = _CHUNK_SIZE, 0
        elif length:
            self._state, self._remaining = _LENGTH, length
        else:
            return self._finish()
        return CONTINUE if expect and self._pos >= len(self._buf) else None

    def _take(self, n: int) -> None:
        """Move up to n buffered bytes to the body parts."""
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail <= 0:
            return
        if n >= avail:
            self._parts.append(buf if pos == 0 and isinstance(buf, bytes) else bytes(buf[pos:]))
            self._buf, self._pos, self._scanned = b"", 0, 0
            self._remaining -= avail
        else:
            self._parts.append(bytes(buf[pos:pos + n]))
            self._pos = self._scanned = pos + n
            self._remaining -= n

    def _finish(self) -> Request:
        req, parts = self._req, self._parts
        assert req is not None
        if parts:
            req.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._parts = []
        self._req, self._state = None, _HEAD
        return req

    def _line(self, limit: int) -> bytes | None:
        buf, pos = self._buf, self._pos
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos > limit:
                raise _bad("a chunk-size or trailer line is too long")
            return None
        line = bytes(buf[pos:end])
        self._pos = self._scanned = end + 2
        if self._pos >= len(buf):
            self._buf, self._pos, self._scanned = b"", 0, 0
        return line

    def _chunked(self) -> Request | None:
        while True:
            state = self._state
            if state == _CHUNK_DATA:
                self._take(self._remaining)
                if self._remaining:
                    return None
                self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(self._buf) - self._pos < 2:
                    return None
                if self._buf[self._pos:self._pos + 2] != b"\r\n":
                    raise _bad("chunk data does not end with CRLF")
                self._pos += 2
                self._state = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                line = self._line(MAX_CHUNK_LINE)
                if line is None:
                    return None
                size = _chunk_size(line)
                if self._size + size > self.max_body:
                    raise _too_large(self.max_body)
                self._size += size
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILER
            else:  # trailer fields: checked, counted against the head limit, dropped
                line = self._line(self.max_head)
                if line is None:
                    return None
                if not line:
                    return self._finish()
                self._trailer += len(line) + 2
                if self._trailer > self.max_head:
                    raise ProtocolError(431, "headers-too-large", "the trailer fields are too large")
                _field(line)


def _chunk_size(line: bytes) -> int:
    size, _, ext = line.partition(b";")
    size = size.rstrip(b" \t")
    if not size or len(size) > 16 or size.translate(None, _HEX) or ext.translate(None, _FIELD_CHARS):
        raise _bad("a malformed chunk-size line")
    return int(size, 16)


def _field(line: bytes) -> tuple[bytes, bytes]:
    name, sep, value = line.partition(b":")
    if not sep or not name or name.translate(None, _TCHAR):
        if line[:1] in (b" ", b"\t"):
            raise _bad("obsolete line folding in a header")
        if name.rstrip(b" \t") != name:
            raise _bad("whitespace between a header name and its colon")
        raise _bad("a malformed header line")
    value = value.strip(b" \t")
    if value.translate(None, _FIELD_CHARS):
        raise _bad("a control character in a header value")
    return name.lower(), value


def _parse_head(head: bytes, max_body: int) -> tuple[Request, int, bool, bool]:
    """The request, its Content-Length, whether chunked, and whether the client expects 100 Continue."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise _bad("a malformed request line")
    method, target, raw_version = parts
    version = _VERSIONS.get(raw_version)
    if version is None:
        v = raw_version
        if len(v) == 8 and v[:5] == b"HTTP/" and v[5:6].isdigit() and v[6:7] == b"." and v[7:8].isdigit():
            raise ProtocolError(505, "unsupported-version", "only HTTP/1.1 and HTTP/1.0 are served")
        raise _bad("a malformed HTTP version")
    if not method or method.translate(None, _TCHAR):
        raise _bad("a malformed method")
    if target[:1] != b"/" or target.translate(None, _VCHAR):
        raise _bad("the request target is not an absolute path")
    if len(lines) > MAX_FIELDS + 1:
        raise ProtocolError(431, "headers-too-large", f"more than {MAX_FIELDS} header fields")
    headers: list[tuple[bytes, bytes]] = []
    length: bytes | None = None
    codings: list[bytes] = []
    connection: list[bytes] = []
    expect: bytes | None = None
    hosts = 0
    for line in lines[1:]:
        name, value = _field(line)
        headers.append((name, value))
        if name == b"content-length":
            if not value.isdigit() or (length is not None and int(length) != int(value)):
                raise _bad("a malformed or conflicting Content-Length")
            length = value
        elif name == b"transfer-encoding":
            codings += [c.strip(b" \t").lower() for c in value.split(b",")]
        elif name == b"connection":
            connection += [c.strip(b" \t").lower() for c in value.split(b",")]
        elif name == b"host":
            hosts += 1
        elif name == b"expect":
            expect = value.lower()
    if hosts != 1 and version == "HTTP/1.1":
        raise _bad("an HTTP/1.1 request needs exactly one Host header")
    if version == "HTTP/1.1":
        keep = b"close" not in connection
    else:
        keep = b"keep-alive" in connection and b"close" not in connection
    text = target.decode("ascii")
    req = Request(method.decode("ascii"), text, text.partition("?")[0], version, headers, keep)
    wants_continue = False
    if expect is not None and version == "HTTP/1.1":  # HTTP/1.0 has no 100 (RFC 9110 10.1.1)
        if expect != b"100-continue":
            raise ProtocolError(417, "expectation-failed", "only Expect: 100-continue is understood")
        wants_continue = True
    if codings:
        if length is not None:
            raise _bad("both Transfer-Encoding and Content-Length")
        if version != "HTTP/1.1":
            raise _bad("Transfer-Encoding in an HTTP/1.0 request")
        if any(c != b"chunked" for c in codings):
            if b"" in codings:
                raise _bad("a malformed Transfer-Encoding")
            raise ProtocolError(501, "unsupported-transfer-coding", "only the chunked transfer coding is supported")
        if len(codings) != 1:
            raise _bad("chunked applied more than once")
        return req, 0, True, wants_continue
    size = int(length) if length is not None else 0
    if size > max_body:
        raise _too_large(max_body)
    return req, size, False, wants_continue and size > 0


# --- the server -----------------------------------------------------------------------------------

Handler = Callable[[Request], "Response | Awaitable[Response]"]
ErrorResponder = Callable[[int, str, str], Response]


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int
    max_head: int = MAX_HEAD
    request_timeout: float = REQUEST_TIMEOUT_S
    idle_timeout: float = IDLE_TIMEOUT_S
    linger: float = LINGER_S


_PREFIXES: dict[tuple[int, str], bytes] = {}


def encode_head(resp: Response, close: bool, keep_alive_10: bool = False) -> bytes:
    """The status line and header fields of an answer (always HTTP/1.1, RFC 9110 6.2)."""
    prefix = _PREFIXES.get((resp.status, resp.content_type))
    if prefix is None:
        prefix = _PREFIXES[(resp.status, resp.content_type)] = (
            f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Unknown')}\r\nContent-Type: {resp.content_type}\r\n"
        ).encode("latin-1")
    head = b"%sContent-Length: %d\r\n" % (prefix, len(resp.body))
    if resp.headers:
        head += "".join(f"{name}: {value}\r\n" for name, value in resp.headers).encode("latin-1")
    if close:
        return head + b"Connection: close\r\n\r\n"
    return head + (b"Connection: keep-alive\r\n\r\n" if keep_alive_10 else b"\r\n")


class _Connection(asyncio.Protocol):
    """One client connection: parse, hand requests to the handler one at a time, answer in order.

    One timer per connection: a request moves `_deadline` (a float) instead of
    scheduling a timer of its own, and the timer looks at it at least every
    `_period` seconds (the shortest limit), so a deadline moved earlier (idle ->
    a request arriving, a refusal's linger) is enforced that late at most.
    """

    def __init__(self, server: Server):
        self._server = server
        self._loop = server.loop
        self._limits = server.limits
        self._parser = Parser(server.limits.max_body, server.limits.max_head)
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Future[Response] | None = None
        self._pending: Request | None = None
        self._writable = True
        self._closing = False  # the last answer is written, or a refusal: what comes in is dropped
        self._idle = True  # between requests, nothing of the next one received
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._period = min(server.limits.request_timeout, server.limits.idle_timeout, server.limits.linger)

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(self)
        self._deadline = self._loop.time() + self._limits.idle_timeout
        self._arm()

    def _arm(self) -> None:
        self._timer = self._loop.call_at(min(self._deadline, self._loop.time() + self._period), self._on_timer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # after a refusal: drained and dropped until the client stops or `linger` runs out
        if self._idle:
            self._idle = False
            self._deadline = self._loop.time() + self._limits.request_timeout
        self._parser.feed(data)
        if self._task is None:
            self._process()

    def eof_received(self) -> bool:
        # A client that half-closes still gets the answer it is owed, then the connection closes.
        if self._task is None or self._closing:
            return False
        self._closing = True
        return True

    def pause_writing(self) -> None:
        # The client is not reading its answers: take no more requests until it does.
        self._writable = False
        self._deadline = self._loop.time() + self._limits.request_timeout
        if self._transport is not None and not self._closing:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writable = True
        if self._transport is not None and self._task is None and not self._closing:
            self._transport.resume_reading()
            self._process()

    # -- requests

    def _process(self) -> None:
        parser = self._parser
        while self._task is None and self._writable and not self._closing:
            try:
                item = parser.next()
            except ProtocolError as exc:
                self._reject(exc.status, exc.code, exc.detail)
                return
            if item is None:
                break
            if item is CONTINUE:
                assert self._transport is not None
                self._transport.write(_CONTINUE_LINE)
                continue
            assert isinstance(item, Request)
            self._dispatch(item)
        if self._task is None and not self._closing and parser.idle:
            self._idle = True
            self._deadline = self._loop.time() + self._limits.idle_timeout

    def _dispatch(self, req: Request) -> None:
        try:
            result = self._server.handler(req)
        except Exception:
            log.exception("the request handler failed")
            result = self._server.on_error(500, "internal", "the server failed on this request")
        if isinstance(result, Response):
            self._respond(req, result)
            return
        self._pending = req
        self._task = task = asyncio.ensure_future(result)
        task.add_done_callback(self._handled)
        assert self._transport is not None
        self._transport.pause_reading()

    def _handled(self, task: asyncio.Future[Response]) -> None:
        req, self._pending, self._task = self._pending, None, None
        if self._transport is None or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("the request handler failed", exc_info=exc)
            result = self._server.on_error(500, "internal", "the server failed on this request")
        else:
            result = task.result()
        assert req is not None
        self._respond(req, result)
        if self._transport is not None and not self._closing:
            if self._writable:
                self._transport.resume_reading()
            self._deadline = self._loop.time() + self._limits.request_timeout
            self._process()

    def _respond(self, req: Request, resp: Response) -> None:
        transport = self._transport
        if transport is None:
            return
        close = not req.keep_alive or self._closing or self._server.stopping
        head = encode_head(resp, close, keep_alive_10=req.version == "HTTP/1.0")
        if len(resp.body) < 65536:
            transport.write(head + resp.body)  # one send
        else:
            transport.writelines((head, resp.body))
        if close:
            self._closing = True
            self._deadline = self._loop.time() + self._limits.request_timeout  # to flush it
            transport.close()

    def _reject(self, status: int, code: str, detail: str) -> None:
        """Answer a protocol error and stop, dropping what the client still sends (for `linger` s at most)."""
        transport = self._transport
        self._closing = True
        if transport is None:
            return
        resp = self._server.on_error(status, code, detail)
        transport.write(encode_head(resp, close=True) + resp.body)
        self._deadline = self._loop.time() + self._limits.linger
        if transport.can_write_eof():
            transport.write_eof()
            if self._writable:
                transport.resume_reading()
        else:
            transport.close()

    def _on_timer(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        now = self._loop.time()
        if self._task is not None:  # the handler bounds its own time; look again later
            self._deadline = max(self._deadline, now + self._limits.request_timeout)
        if now >= self._deadline:
            if self._closing or not self._writable:
                transport.abort()  # an answer the client does not read, or the lingering is over
                return
            if self._idle:
                transport.close()
                return
            self._reject(408, "request-timeout", f"the request did not arrive within {self._limits.request_timeout:g} s")
        self._arm()

    def shutdown(self) -> None:
        """Server stop: close now unless an answer is being made (that one closes when written)."""
        if self._transport is not None and self._task is None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class Server:
    """Serve `handler` on host:port. `on_error` builds the answer to a protocol error (status, code, detail)."""

    def __init__(self, handler: Handler, on_error: ErrorResponder, limits: Limits):
        self.handler, self.on_error, self.limits = handler, on_error, limits
        self.connections: set[_Connection] = set()
        self.stopping = False
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await self.loop.create_server(lambda: _Connection(self), host, port, reuse_address=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """Stop accepting, close idle connections, give answers in progress `grace` seconds, then cut."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        deadline = self.loop.time() + grace
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        await asyncio.sleep(0)  # let connection_lost run
