"""The HTTP call to the scanner: one POST per request over a pool of kept-alive connections.

A small HTTP/1.1 client of its own, for one endpoint of our own service: the
proxy waits for this call on every request. It is built on asyncio protocols,
not streams or tasks: :meth:`ScannerClient.start` writes the request at once
(on an idle connection) and hands back a future that the connection resolves
when the answer is complete, so a small request costs one write, one read and
one wake-up (a general-purpose client spent about 0.15 ms of Python per call,
and a stream-and-task client about 0.1 ms, on machinery this path never uses).

What it accepts is strict: a status line, headers within 64 KiB, a body framed
by Content-Length, chunked or the connection's close, at most 4 MiB. Anything
else is a bad answer.

Every way the call can go wrong comes back as a :class:`ScanFailure` (never an
exception), so the caller cannot forget to fail closed. The deadline covers the
whole call, a wait for a free connection included. A connection is reused only
after a complete answer (a cancelled call's answer is still read first); on a
timeout or any error it is closed. A request that met a kept-alive connection the scanner had already
closed is sent once more on a new one (a scan has no side effects).
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import urlsplit

from addon.scanning import Outcome, ScanFailure, parse_response

_MAX_ANSWER = 4 * 1024 * 1024  # a scanner answer is small; more is not a valid answer
_MAX_HEAD = 64 * 1024


class BadAnswer(Exception):
    """The scanner's answer is not HTTP this client accepts."""


class _Answer:
    """Reads one answer incrementally (sans I/O): :meth:`feed` bytes, then :meth:`end` at the connection's close."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.status = 0
        self.keep = False
        self.body: bytes | None = None  # set once the answer is complete
        self._framing = ""  # "" (head not read yet) | "length" | "chunked" | "close"
        self._length = 0
        self._pos = 0  # chunked: where the next chunk-size line starts in buf
        self._chunks = bytearray()

    def feed(self, data: bytes) -> bool:
        """Take more bytes; True once the answer is complete. Raises BadAnswer."""
        self.buf += data
        if not self._framing and not self._head():
            return False
        if self._framing == "length":
            if len(self.buf) >= self._length:
                if len(self.buf) > self._length:
                    raise BadAnswer("more bytes than the answer's Content-Length")
                self.body = bytes(self.buf)
        elif self._framing == "chunked":
            self._read_chunks()
        elif len(self.buf) > _MAX_ANSWER:
            raise BadAnswer("the answer is too large")
        return self.body is not None

    def end(self) -> bool:
        """The connection closed: True when that completes the answer (close-delimited)."""
        if self.body is None and self._framing == "close":
            self.body = bytes(self.buf)
        return self.body is not None

    def _head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > _MAX_HEAD:
                raise BadAnswer("the answer's headers are too large")
            return False
        if end + 4 > _MAX_HEAD:
            raise BadAnswer("the answer's headers are too large")
        status_line, _, header_lines = bytes(self.buf[:end]).partition(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit() or rest[3:4] not in (b" ", b""):
            raise BadAnswer("not an HTTP/1.x status line")
        fields = _fields(header_lines)
        del self.buf[: end + 4]
        self.status = int(code)
        self.keep = version == b"HTTP/1.1" and fields.get(b"connection", b"").lower() != b"close"
        if b"transfer-encoding" in fields:
            if fields[b"transfer-encoding"].lower() != b"chunked" or b"content-length" in fields:
                raise BadAnswer("an unsupported transfer encoding")
            self._framing = "chunked"
        elif b"content-length" in fields:
            length = fields[b"content-length"]
            if not length.isdigit() or int(length) > _MAX_ANSWER:
                raise BadAnswer("the answer is too large" if length.isdigit() else "a malformed Content-Length")
            self._framing, self._length = "length", int(length)
        else:
            self._framing, self.keep = "close", False  # delimited by the connection's close
        return True

    def _read_chunks(self) -> None:
        buf = self.buf
        while True:
            line_end = buf.find(b"\r\n", self._pos)
            if line_end < 0:
                if len(buf) - self._pos > _MAX_HEAD:
                    raise BadAnswer("a malformed chunk size")
                return
            size_text = bytes(buf[self._pos : line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadAnswer("a malformed chunk size") from None
            if size < 0:
                raise BadAnswer("a malformed chunk size")
            if size == 0:
                if not self._trailers(line_end + 2):
                    return
                self.body = bytes(self._chunks)
                return
            if len(self._chunks) + size > _MAX_ANSWER:
                raise BadAnswer("the answer is too large")
            data_end = line_end + 2 + size
            if len(buf) < data_end + 2:
                return
            if buf[data_end : data_end + 2] != b"\r\n":
                raise BadAnswer("a malformed chunk")
            self._chunks += buf[line_end + 2 : data_end]
            self._pos = data_end + 2

    def _trailers(self, start: int) -> bool:
        """The trailer section after the last chunk is complete (an empty line ends it)."""
        if self.buf[start : start + 2] == b"\r\n":
            return True
        end = self.buf.find(b"\r\n\r\n", start)
        if end < 0 and len(self.buf) - start > _MAX_HEAD:
            raise BadAnswer("the answer's trailers are too large")
        return end >= 0


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


class _Call:
    """One scan: its request bytes, the future the caller awaits, its deadline timer."""

    __slots__ = ("conn", "future", "head", "payload", "resent", "timer")

    def __init__(self, future: asyncio.Future[Outcome], head: bytes, payload: bytes):
        self.future, self.head, self.payload = future, head, payload
        self.timer: asyncio.TimerHandle | None = None
        self.conn: _Connection | None = None  # the connection that owes this call's answer
        self.resent = False

    def expire(self, outcome: ScanFailure) -> None:
        self.finish(outcome)
        conn = self.conn
        if conn is not None and conn.call is self:
            conn.close()  # half a conversation is never reused

    def finish(self, outcome: Outcome) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.future.done():
            self.future.set_result(outcome)


class _Connection(asyncio.Protocol):
    """One kept-alive connection to the scanner: one call at a time."""

    def __init__(self, pool: ScannerClient):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.call: _Call | None = None
        self.answer: _Answer | None = None
        self.used = False  # has completed an answer before: a close before any byte means stale
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, call: _Call) -> None:
        assert self.transport is not None
        self.call, self.answer, call.conn = call, _Answer(), self
        self.transport.writelines((call.head, call.payload))

    def data_received(self, data: bytes) -> None:
        call, answer = self.call, self.answer
        if call is None or answer is None:
            self.close()  # bytes nobody asked for
            return
        try:
            complete = answer.feed(data)
        except BadAnswer as exc:
            self._fail(call, ScanFailure("scanner-bad-answer", f"the scanner's answer is not valid HTTP ({exc})"))
            return
        if complete:
            self._complete(call, answer)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        call, answer = self.call, self.answer
        self.call = self.answer = None
        self.pool._lost(self)
        if call is None or answer is None or call.future.done():
            return
        if answer.end():
            self.call, self.answer = call, answer
            self._complete(call, answer)
            return
        if self.used and not answer.buf and not answer.status and not call.resent:
            call.resent = True
            self.pool._dispatch(call, fresh=True)  # the scanner had closed this kept-alive connection
            return
        if answer.status or answer.buf:
            call.finish(ScanFailure("scanner-bad-answer", "the scanner's answer ended early"))
        else:
            call.finish(ScanFailure("scanner-unreachable", "the scanner closed the connection"))

    def _complete(self, call: _Call, answer: _Answer) -> None:
        self.call = self.answer = None
        self.used = True
        assert answer.body is not None
        if not answer.keep:
            self.close()
        call.finish(parse_response(answer.status, answer.body))
        if answer.keep and not self.closed:
            self.pool._idle_again(self)

    def _fail(self, call: _Call, outcome: ScanFailure) -> None:
        self.call = self.answer = None
        self.close()
        call.finish(outcome)

    def close(self) -> None:
        call, self.call, self.answer = self.call, None, None
        if call is not None:
            call.finish(ScanFailure("scanner-unreachable", "the connection to the scanner was closed"))
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


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
        self._open = 0  # connections open or opening
        self._idle: list[_Connection] = []
        self._queue: deque[_Call] = deque()  # calls waiting for a free connection
        self._all: set[_Connection] = set()

    def start(self, payload: bytes, deadline_s: float) -> asyncio.Future[Outcome]:
        """Send ``payload`` now if a connection is free; the future's result is the outcome (never an exception)."""
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), self._head + b"%d\r\n\r\n" % len(payload), payload)
        # A call its caller cancelled keeps its connection until the answer is read (then
        # reused) or this timer closes it.
        call.timer = loop.call_later(deadline_s, call.expire, ScanFailure(
            "scanner-timeout", f"the scanner did not answer within {deadline_s * 1000:.0f} ms"))
        self._dispatch(call)
        return call.future

    async def scan(self, payload: bytes, deadline_s: float) -> Outcome:
        return await self.start(payload, deadline_s)

    def _dispatch(self, call: _Call, fresh: bool = False) -> None:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed:
                conn.send(call)
                return
        if self._open < self._limit or fresh:
            self._open += 1
            asyncio.get_running_loop().create_task(self._connect(call))
        else:
            self._queue.append(call)

    async def _connect(self, call: _Call) -> None:
        try:
            _, conn = await asyncio.get_running_loop().create_connection(lambda: _Connection(self), self._host, self._port)
        except OSError as exc:
            self._open -= 1
            call.finish(ScanFailure("scanner-unreachable", f"the scanner could not be reached ({exc.strerror or type(exc).__name__})"))
            self._next()
            return
        except BaseException:
            self._open -= 1
            raise
        self._all.add(conn)
        if call.future.done():  # timed out or cancelled while connecting
            self._idle_again(conn)
        else:
            conn.send(call)

    def _idle_again(self, conn: _Connection) -> None:
        while self._queue:
            call = self._queue.popleft()
            if not call.future.done():
                conn.send(call)
                return
        self._idle.append(conn)

    def _lost(self, conn: _Connection) -> None:
        self._open -= 1
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._next()

    def _next(self) -> None:
        """A connection went away: a waiting call gets a new one."""
        while self._queue and self._open < self._limit:
            call = self._queue.popleft()
            if not call.future.done():
                self._dispatch(call, fresh=True)

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        for call in self._queue:
            call.finish(ScanFailure("scanner-unreachable", "the proxy is shutting down"))
        self._queue.clear()
