"""scanner/http1.py: the scanner's own HTTP/1.1 server, over real loopback sockets (and its parser alone).

The handler here echoes what it was given, so every framing test checks what the
server delivered, not only a status. Each refusal has a control through the same
path that is served: the limits are probed just under and just over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import orjson
import pytest

from scanner.http1 import CONTINUE, Limits, Parser, ProtocolError, Request, Response, Server

LIMIT = 4096  # body limit of the test server
HEAD = 2048  # head limit of the test server


# --- helpers (also used by test_scanner_http1_service.py and test_scanner_service_inline.py) --------


@contextlib.contextmanager
def serving(start: Callable[[], Awaitable[Server]], close: Callable[[], Awaitable[object]] | None = None,
            ) -> Iterator[tuple[Server, str]]:
    """Run a server on its own event loop in a thread; yields it and the loop thread's name; stops it, then close()."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="http1-test-loop", daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        try:
            yield server, thread.name
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(grace=1.0), loop).result(30)
            if close is not None:
                asyncio.run_coroutine_threadsafe(close(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Client:
    """A raw HTTP/1.1 client on one socket: send bytes, read answers framed by Content-Length."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _until(self, ready: Callable[[], int]) -> bytes:
        """Read until ready() gives how many buffered bytes to take (0: not yet)."""
        while not (n := ready()):
            more = self.sock.recv(65536)
            if not more:
                raise EOFError("the server closed the connection")
            self.buf += more
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> tuple[int, dict[str, str], bytes]:
        head = self._until(lambda: self.buf.find(b"\r\n\r\n") + 4 if b"\r\n\r\n" in self.buf else 0)
        status_line, *fields = head[:-4].decode("latin-1").split("\r\n")
        assert status_line.startswith("HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        for field in fields:
            name, _, value = field.partition(":")
            assert name.lower() not in headers
            headers[name.lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = self._until(lambda: length if len(self.buf) >= length else 0) if length else b""
        return int(status_line.split()[1]), headers, body

    def closed(self, wait: float = 3.0) -> bool:
        """True when the server closed (or half-closed) the connection within `wait` s with nothing more sent."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(self.timeout)


def request(method: str = "POST", path: str = "/echo", body: bytes = b"", *headers: str, version: str = "HTTP/1.1",
            length: bool = True) -> bytes:
    lines = [f"{method} {path} {version}", "Host: scanner.test", *headers]
    if length and (body or method == "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes, ext: str = "", trailers: str = "") -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext.encode(), c) for c in chunks)
    return out + b"0\r\n" + trailers.encode() + b"\r\n"


# --- the echo server ------------------------------------------------------------------------------


class Echo:
    """The handler: answers what it received; `/slow` answers from a coroutine, `/hold` waits for `release`."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.release = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, req: Request) -> Response | Awaitable[Response]:
        self.seen.append(req.path)
        answer = Response(200, orjson.dumps({"method": req.method, "path": req.path, "target": req.target,
                                             "version": req.version, "length": len(req.body),
                                             "sha": hashlib.sha256(req.body).hexdigest(), "keep": req.keep_alive}))
        if req.path == "/boom":
            raise RuntimeError("handler bug")
        if req.path == "/slow":
            return self._later(answer, asyncio.sleep(0.2))
        if req.path == "/hold":
            return self._later(answer, self.release.wait())
        return answer

    async def _later(self, answer: Response, wait: Awaitable[object]) -> Response:
        await wait
        return answer


def on_error(status: int, code: str, detail: str) -> Response:
    return Response(status, orjson.dumps({"error": code, "detail": detail}))


@pytest.fixture
def echo() -> Iterator[tuple[int, Echo]]:
    handler = Echo()
    yield from _echo_server(handler, Limits(max_body=LIMIT, max_head=HEAD, request_timeout=5, idle_timeout=5, linger=1))


@pytest.fixture
def quick() -> Iterator[tuple[int, Echo]]:
    """Short timeouts: a request must arrive within 0.4 s, a kept-alive connection may idle 0.4 s."""
    handler = Echo()
    yield from _echo_server(handler, Limits(max_body=LIMIT, max_head=HEAD, request_timeout=0.4, idle_timeout=0.4, linger=1))


def _echo_server(handler: Echo, limits: Limits) -> Iterator[tuple[int, Echo]]:
    async def start() -> Server:
        handler.release = asyncio.Event()  # bound to the server's loop
        server = Server(handler, on_error, limits)
        await server.start("127.0.0.1", 0)
        return server

    with serving(start) as (server, _):
        handler.loop = server.loop
        yield server.port, handler


def _echoed(answer: tuple[int, dict[str, str], bytes]) -> dict[str, object]:
    status, _, body = answer
    assert status == 200, body
    return orjson.loads(body)


# --- framing --------------------------------------------------------------------------------------


def test_content_length_body_and_keep_alive_reuse(echo) -> None:
    port, _ = echo
    body = b'{"a": 1}'
    with Client(port) as c:
        for i in range(3):  # one connection, three exchanges
            c.send(request("POST", f"/echo?i={i}", body))
            got = _echoed(c.response())
            assert got == {"method": "POST", "path": "/echo", "target": f"/echo?i={i}", "version": "HTTP/1.1",
                           "length": len(body), "sha": hashlib.sha256(body).hexdigest(), "keep": True}
        c.send(request("GET", "/echo", b"", "Connection: close"))
        status, headers, _ = c.response()
        assert status == 200 and headers["connection"] == "close" and c.closed()


def test_chunked_body_with_extensions_and_trailers(echo) -> None:
    port, _ = echo
    parts = (b"hello ", b"chunked ", b"world" * 100)
    with Client(port) as c:
        c.send(request("POST", "/echo", b"", "Transfer-Encoding: chunked", length=False)
               + chunked(*parts, ext=';name="v";flag', trailers="X-Checksum: abc\r\nX-Other: 1\r\n"))
        got = _echoed(c.response())
        assert got["length"] == sum(map(len, parts)) and got["sha"] == hashlib.sha256(b"".join(parts)).hexdigest()
        c.send(request("GET", "/echo"))  # the connection is still in step after the trailers
        assert _echoed(c.response())["path"] == "/echo"


def test_a_request_split_across_many_small_writes(echo) -> None:
    port, _ = echo
    body = bytes(range(256)) * 8
    whole = request("POST", "/echo", body)
    chunked_whole = request("POST", "/echo", b"", "Transfer-Encoding: chunked", length=False) + chunked(body[:1000], body[1000:])
    with Client(port) as c:
        for raw in (whole, chunked_whole):
            for i in range(0, len(raw), 7):
                c.send(raw[i:i + 7])
                if i % 700 == 0:
                    time.sleep(0.002)  # let some of the pieces arrive as reads of their own
            got = _echoed(c.response())
            assert (got["length"], got["sha"]) == (len(body), hashlib.sha256(body).hexdigest())


def test_pipelined_requests_are_answered_in_order(echo) -> None:
    port, handler = echo
    with Client(port) as c:
        # a slow (awaited) answer first: the quick ones behind it must wait their turn
        c.send(request("POST", "/slow", b"1") + request("GET", "/echo?2") + request("POST", "/echo?3", b"333")
               + request("GET", "/echo?4", b"", "Connection: close"))
        targets = [_echoed(c.response())["target"] for _ in range(4)]
        assert targets == ["/slow", "/echo?2", "/echo?3", "/echo?4"] and c.closed()


def test_reading_pauses_while_an_answer_is_awaited(echo) -> None:
    port, handler = echo
    with Client(port) as c:
        c.send(request("GET", "/hold"))
        time.sleep(0.1)
        c.send(request("GET", "/echo?behind"))
        time.sleep(0.2)
        assert handler.seen == ["/hold"]  # the second request is not taken while the first is handled
        assert handler.loop is not None
        handler.loop.call_soon_threadsafe(handler.release.set)
        assert [_echoed(c.response())["target"] for _ in range(2)] == ["/hold", "/echo?behind"]
        assert handler.seen == ["/hold", "/echo"]


def test_http_1_0_closes_unless_kept_alive(echo) -> None:
    port, _ = echo
    with Client(port) as c:
        c.send(request("GET", "/echo", version="HTTP/1.0"))
        status, headers, body = c.response()
        assert status == 200 and headers["connection"] == "close" and orjson.loads(body)["version"] == "HTTP/1.0"
        assert c.closed()
    with Client(port) as c:  # the control: keep-alive asked for, kept, and said so
        for _ in range(2):
            c.send(request("GET", "/echo", b"", "Connection: keep-alive", version="HTTP/1.0"))
            status, headers, _ = c.response()
            assert status == 200 and headers["connection"] == "keep-alive"
        assert not c.closed(wait=0.3)


def test_expect_100_continue(echo) -> None:
    port, _ = echo
    body = b"x" * LIMIT
    with Client(port) as c:
        c.send(request("POST", "/echo", b"", "Expect: 100-continue", f"Content-Length: {LIMIT}", length=False))
        assert c.response() == (100, {}, b"")
        c.send(body)
        assert _echoed(c.response())["length"] == LIMIT
    with Client(port) as c:  # over the limit: 413 at once, no 100, the body never sent
        c.send(request("POST", "/echo", b"", "Expect: 100-continue", f"Content-Length: {LIMIT + 1}", length=False))
        status, headers, body = c.response()
        assert status == 413 and orjson.loads(body)["error"] == "too-large" and headers["connection"] == "close"
        assert c.closed()


# --- limits: each just under (served) and just over (refused) ------------------------------------


def _head_of(size: int) -> bytes:
    base = request("GET", "/echo", b"", "X-Pad: ")
    return base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (size - len(base)))


@pytest.mark.parametrize(("raw", "status"), [
    (_head_of(HEAD + 4), 200),  # the head proper (without its final CRLFCRLF) is exactly the limit
    (_head_of(HEAD + 5), 431),
    (request("POST", "/echo", b"b" * LIMIT), 200),
    (request("POST", "/echo", b"b" * (LIMIT + 1)), 413),
    (request("POST", "/echo", b"", "Transfer-Encoding: chunked", length=False) + chunked(b"c" * 4000, b"c" * (LIMIT - 4000)), 200),
    (request("POST", "/echo", b"", "Transfer-Encoding: chunked", length=False) + chunked(b"c" * 4000, b"c" * (LIMIT - 3999)), 413),
], ids=["head-at-limit", "head-over", "length-at-limit", "length-over", "chunked-at-limit", "chunked-over"])
def test_limits(echo, raw: bytes, status: int) -> None:
    port, _ = echo
    with Client(port) as c:
        c.send(raw)
        got, headers, body = c.response()
        assert got == status
        if status == 200:
            assert not c.closed(wait=0.3)
        else:
            error = orjson.loads(body)["error"]
            assert error == {413: "too-large", 431: "headers-too-large"}[status] and headers["connection"] == "close"
            assert c.closed()


def test_a_head_that_never_ends_is_refused_at_the_limit(echo) -> None:
    port, _ = echo
    with Client(port) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: scanner.test\r\nX-Pad: " + b"p" * (HEAD + 100))
        assert c.response()[0] == 431 and c.closed()


# --- malformed input: the right status, then the connection closed -------------------------------

MALFORMED = {
    "no-version": (b"GET /echo\r\nHost: h\r\n\r\n", 400),
    "extra-space": (b"GET  /echo HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "lower-case-version": (b"GET /echo http/1.1\r\nHost: h\r\n\r\n", 400),
    "http-2-version": (b"GET /echo HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    "garbage-version": (b"GET /echo HTTP/1.x\r\nHost: h\r\n\r\n", 400),
    "absolute-form-target": (b"GET http://h/echo HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "control-char-in-target": (b"GET /ec\x01ho HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "bad-method": (b"G(T /echo HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "no-host": (b"GET /echo HTTP/1.1\r\n\r\n", 400),
    "two-hosts": (b"GET /echo HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", 400),
    "obs-fold": (b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", 400),
    "space-before-colon": (b"GET /echo HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    "no-colon": (b"GET /echo HTTP/1.1\r\nHost: h\r\nJunk\r\n\r\n", 400),
    "bare-cr-in-value": (b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A: 1\r2\r\n\r\n", 400),
    "nul-in-value": (b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A: 1\x002\r\n\r\n", 400),
    "bare-lf-lines": (b"GET /echo HTTP/1.1\nHost: h\n\n", 400),
    "bare-lf-inside": (b"GET /echo HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n", 400),
    "length-not-digits": (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1e3\r\n\r\n", 400),
    "length-signed": (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", 400),
    "length-list": (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    "length-conflict": (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    "length-and-chunked": (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"hello"), 400),
    "unknown-coding": (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    "gzip-then-chunked": (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked(b"x"), 501),
    "chunked-twice": (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n" + chunked(b"x"), 400),
    "chunked-in-http-1.0": (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"x"), 400),
    "bad-chunk-size": (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-longer-than-said": (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400),
    "bad-trailer": (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nBad Trailer\r\n\r\n", 400),
    "unknown-expectation": (b"POST /echo HTTP/1.1\r\nHost: h\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx", 417),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_requests_are_refused_and_the_connection_closed(echo, name: str) -> None:
    port, handler = echo
    raw, status = MALFORMED[name]
    with Client(port) as c:
        c.send(request("GET", "/echo?first"))  # the control, on the same connection
        assert _echoed(c.response())["target"] == "/echo?first"
        c.send(raw)
        got, headers, body = c.response()
        assert (got, headers["connection"], headers["content-type"]) == (status, "close", "application/json")
        assert set(orjson.loads(body)) == {"error", "detail"}
        assert c.closed()
    assert handler.seen == ["/echo"]  # the refused request never reached the handler


def test_a_request_after_a_refused_one_is_not_served(echo) -> None:
    """Bytes behind a refused request (a smuggling attempt) are dropped, never parsed as a request."""
    port, handler = echo
    smuggled = request("GET", "/echo?smuggled")
    with Client(port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled)
        assert c.response()[0] == 400 and c.closed()
    assert handler.seen == []


def test_a_handler_exception_is_a_500_and_the_server_goes_on(echo) -> None:
    port, _ = echo
    with Client(port) as c:
        c.send(request("GET", "/boom"))
        status, _, body = c.response()
        assert status == 500 and orjson.loads(body)["error"] == "internal"
        c.send(request("GET", "/echo"))
        assert _echoed(c.response())["path"] == "/echo"


# --- timeouts (short ones, configured) -----------------------------------------------------------


def test_an_idle_kept_alive_connection_is_closed(quick) -> None:
    port, _ = quick
    with Client(port) as c:
        for _ in range(3):  # the control: activity within the idle limit keeps it open
            c.send(request("GET", "/echo"))
            assert _echoed(c.response())["keep"] is True
            time.sleep(0.2)
        t0 = time.monotonic()
        assert c.closed()
        assert 0.05 < time.monotonic() - t0 < 2.0


def test_a_stalled_request_gets_408_and_is_closed(quick) -> None:
    port, handler = quick
    with Client(port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhal")  # 3 of 10 bytes, then nothing
        status, headers, body = c.response()
        assert status == 408 and orjson.loads(body)["error"] == "request-timeout" and c.closed()
    with Client(port) as c:  # trickling a head in does not extend the time: it counts from the first byte
        for i in range(12):
            c.send(b"GET /echo HTTP/1.1\r\n" if i == 0 else b"X-A: %d\r\n" % i)
            time.sleep(0.1)
        assert c.response()[0] == 408 and c.closed()
    assert handler.seen == []


@pytest.fixture
def long_idle() -> Iterator[tuple[int, Echo]]:
    """A request must arrive within 0.4 s, but a kept-alive connection may idle 5 s."""
    handler = Echo()
    yield from _echo_server(handler, Limits(max_body=LIMIT, max_head=HEAD, request_timeout=0.4, idle_timeout=5, linger=1))


def test_the_request_timeout_holds_when_the_idle_limit_is_longer(long_idle) -> None:
    port, _ = long_idle
    with Client(port) as c:
        c.send(request("GET", "/echo"))  # the control: a whole request is answered and the connection kept
        assert _echoed(c.response())["keep"] is True
        time.sleep(0.6)  # idle longer than the request timeout: still open
        t0 = time.monotonic()
        c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhal")  # 3 of 10 bytes
        status, _, body = c.response()
        assert status == 408 and orjson.loads(body)["error"] == "request-timeout"
        assert time.monotonic() - t0 < 2.0  # the 0.4 s limit, not the 5 s idle one


def test_a_silent_new_connection_is_closed(quick) -> None:
    port, _ = quick
    with Client(port) as c:
        assert c.closed()


# --- the parser alone (sans-IO) ------------------------------------------------------------------


def _parse_all(*pieces: bytes, max_body: int = LIMIT) -> list[Request | object]:
    parser, out = Parser(max_body=max_body, max_head=HEAD), []
    for piece in pieces:
        parser.feed(piece)
        while (item := parser.next()) is not None:
            out.append(item)
    assert parser.idle
    return out


def test_parser_yields_requests_with_their_bodies() -> None:
    raw = request("POST", "/a", b"one") + request("GET", "/b?q=1") + request(
        "POST", "/c", b"", "Transfer-Encoding: chunked", length=False) + chunked(b"tw", b"o")
    for pieces in ([raw], [raw[i:i + 1] for i in range(len(raw))], [raw[:10], raw[10:70], raw[70:]]):
        got = _parse_all(*pieces)
        assert [(r.method, r.path, r.target, r.body) for r in got] == [  # type: ignore[union-attr]
            ("POST", "/a", "/a", b"one"), ("GET", "/b", "/b?q=1", b""), ("POST", "/c", "/c", b"two")]
        assert got[0].headers == [(b"host", b"scanner.test"), (b"content-length", b"3")]  # type: ignore[union-attr]


def test_parser_continue_only_when_the_body_is_not_there_yet() -> None:
    head = request("POST", "/a", b"", "Expect: 100-Continue", "Content-Length: 3", length=False)
    assert [type(x).__name__ for x in _parse_all(head, b"abc")] == ["_Continue", "Request"]
    assert _parse_all(head + b"abc")[0].body == b"abc"  # type: ignore[union-attr]  # the body came along: no 100
    assert _parse_all(request("GET", "/a", b"", "Expect: 100-continue"))[0] is not CONTINUE  # no body, no 100


def test_parser_ignores_one_empty_line_before_a_request_only() -> None:
    assert _parse_all(b"\r\n" + request("GET", "/a"))[0].path == "/a"  # type: ignore[union-attr]
    parser = Parser(max_body=LIMIT, max_head=HEAD)
    parser.feed(b"\r\n\r\n" + request("GET", "/a"))
    with pytest.raises(ProtocolError) as err:
        parser.next()
    assert err.value.status == 400


def test_parser_duplicate_equal_content_lengths_are_one() -> None:
    got = _parse_all(request("POST", "/a", b"", "Content-Length: 2", "Content-Length: 2", length=False) + b"ok")
    assert got[0].body == b"ok"  # type: ignore[union-attr]
