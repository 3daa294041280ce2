"""The scanner HTTP client against loopback doubles: every failure is a ScanFailure, never an exception."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from addon.scanclient import BadAnswer, ScannerClient, _Answer
from addon.scanning import ScanFailure, ScanResult

CLEAN = b'{"verdict": "clean", "findings": [], "errors": [], "scan_ms": 0.1}'


async def serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/scan", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def run(coro):
    return asyncio.run(coro)


def test_clean_answer_and_one_call_per_scan() -> None:
    calls = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(await request.json())
        return web.Response(body=CLEAN, content_type="application/json")

    async def main():
        runner, url = await serve(handler)
        client = ScannerClient(url)
        try:
            outcomes = [await client.scan(b'{"request_id": "%d"}' % i, 2.0) for i in range(3)]
        finally:
            await client.close()
            await runner.cleanup()
        return outcomes

    outcomes = run(main())
    assert all(isinstance(o, ScanResult) and o.verdict == "clean" for o in outcomes)
    assert [c["request_id"] for c in calls] == ["0", "1", "2"]


def test_slow_scanner_times_out_at_the_deadline() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(body=CLEAN)

    async def main():
        runner, url = await serve(handler)
        client = ScannerClient(url)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcome = await client.scan(b"{}", 0.2)
            elapsed = loop.time() - started
        finally:
            await client.close()
            await runner.cleanup()
        return outcome, elapsed

    outcome, elapsed = run(main())
    assert isinstance(outcome, ScanFailure) and outcome.reason == "scanner-timeout"
    assert elapsed < 1.5


def test_garbage_and_errors_are_failures() -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b"\x00\x01 not json")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, body=CLEAN)

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"[" + b"1," * (3 * 1024 * 1024) + b"1]")

    async def main():
        results = []
        for handler in (garbage, broken, huge):
            runner, url = await serve(handler)
            client = ScannerClient(url)
            try:
                results.append(await client.scan(b"{}", 5.0))
            finally:
                await client.close()
                await runner.cleanup()
        return results

    reasons = [o.reason for o in run(main())]  # type: ignore[union-attr]
    assert reasons == ["scanner-bad-answer", "scanner-status", "scanner-bad-answer"]


def test_stopped_scanner_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there

    async def main():
        client = ScannerClient(f"http://127.0.0.1:{port}")
        try:
            return await client.scan(b"{}", 2.0)
        finally:
            await client.close()

    outcome = run(main())
    assert isinstance(outcome, ScanFailure) and outcome.reason == "scanner-unreachable"


# --- the HTTP it accepts, the connections it keeps --------------------------------------------------------


class RawScanner:
    """A loopback server that answers each request with the next of ``answers`` (bytes, or None: close at once)."""

    def __init__(self, answers: list[bytes | None], close_after_answer: bool = False):
        self.answers = list(answers)
        self.close_after = close_after_answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def ok(body: bytes = CLEAN, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


def chunked(body: bytes) -> bytes:
    half = len(body) // 2
    chunks = b"%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks


async def scans(server: RawScanner, n: int, **kw) -> list:
    url = await server.start()
    client = ScannerClient(url, **kw)
    try:
        return [await client.scan(b'{"n": %d}' % i, 2.0) for i in range(n)]
    finally:
        await client.close()
        await server.stop()


def test_answers_on_one_kept_alive_connection_in_every_framing() -> None:
    server = RawScanner([ok(), chunked(CLEAN), ok(extra=b"X-Other: 1\r\n")])
    outcomes = run(scans(server, 3))
    assert all(isinstance(o, ScanResult) and o.verdict == "clean" for o in outcomes), outcomes
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/scan HTTP/1.1\r\nHost: 127.0.0.1:") and first.endswith(b'\r\n\r\n{"n": 0}')


def test_a_connection_the_scanner_closed_is_replaced_and_the_scan_sent_again() -> None:
    server = RawScanner([ok(), ok(), ok()], close_after_answer=True)  # every answer, then the connection is gone
    outcomes = run(scans(server, 3))
    assert all(isinstance(o, ScanResult) for o in outcomes), outcomes
    assert server.connections == 3 and len(server.requests) == 3


def test_a_close_delimited_or_connection_close_answer_is_read_and_never_reused() -> None:
    close_delimited = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + CLEAN
    server = RawScanner([close_delimited, ok(extra=b"Connection: close\r\n"), ok()], close_after_answer=True)
    outcomes = run(scans(server, 3))
    assert all(isinstance(o, ScanResult) for o in outcomes), outcomes
    assert server.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBroken header line\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",  # ends early
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["http2", "status", "two-lengths", "negative", "too-large", "gzip-framing", "bad-chunk", "header-line", "short",
         "huge-head"],
)
def test_anything_but_plain_http_1_is_a_bad_answer(answer: bytes) -> None:
    [outcome] = run(scans(RawScanner([answer], close_after_answer=True), 1))
    assert isinstance(outcome, ScanFailure) and outcome.reason == "scanner-bad-answer", outcome


def test_after_a_timeout_the_half_used_connection_is_dropped() -> None:
    async def main():
        gate = asyncio.Event()
        server = RawScanner([ok(), ok()])
        original = server._serve

        async def slow_first(reader, writer):
            if server.connections == 0:
                server.connections += 1
                await reader.readuntil(b"\r\n\r\n")
                await gate.wait()  # never answers in time
                writer.close()
                return
            await original(reader, writer)

        server._serve = slow_first  # type: ignore[method-assign]
        url = await server.start()
        client = ScannerClient(url)
        try:
            late = await client.scan(b"{}", 0.2)
            fine = await client.scan(b"{}", 2.0)
        finally:
            gate.set()
            await client.close()
            await server.stop()
        return late, fine, server.connections

    late, fine, connections = run(main())
    assert isinstance(late, ScanFailure) and late.reason == "scanner-timeout"
    assert isinstance(fine, ScanResult) and connections == 2


def test_at_most_the_pool_size_of_connections_at_once() -> None:
    async def main():
        open_now, most = 0, 0

        async def handler(request: web.Request) -> web.Response:
            nonlocal open_now, most
            open_now += 1
            most = max(most, open_now)
            await asyncio.sleep(0.05)
            open_now -= 1
            return web.Response(body=CLEAN, content_type="application/json")

        runner, url = await serve(handler)
        client = ScannerClient(url, connections=2)
        try:
            outcomes = await asyncio.gather(*(client.scan(b"{}", 5.0) for _ in range(6)))
        finally:
            await client.close()
            await runner.cleanup()
        return outcomes, most

    outcomes, most = run(main())
    assert all(isinstance(o, ScanResult) for o in outcomes) and most == 2


def test_only_a_plain_http_url() -> None:
    with pytest.raises(ValueError):
        ScannerClient("https://scanner:8000")


# --- the answer read in pieces; calls waiting, cancelled, shut down ----------------------------------------


@pytest.mark.parametrize("answer", [ok(), chunked(CLEAN), ok(extra=b"X-Other: 1\r\n"), ok(b"")], ids=["length", "chunked", "extra-header", "empty"])
def test_an_answer_read_one_byte_at_a_time_is_the_same_answer(answer: bytes) -> None:
    whole = _Answer()
    assert whole.feed(answer)
    pieces = _Answer()
    done = [pieces.feed(answer[i : i + 1]) for i in range(len(answer))]
    assert done[-1] and not any(done[:-1])  # complete exactly at the last byte, not before
    assert (pieces.status, pieces.body, pieces.keep) == (whole.status, whole.body, whole.keep) == (200, whole.body, True)
    assert whole.body == (b"" if answer == ok(b"") else CLEAN)


def test_a_close_delimited_answer_is_complete_only_at_the_close() -> None:
    answer = _Answer()
    assert not answer.feed(b"HTTP/1.1 200 OK\r\n\r\n" + CLEAN)
    assert answer.end() and answer.body == CLEAN and not answer.keep


def test_bytes_past_the_content_length_are_a_bad_answer() -> None:
    with pytest.raises(BadAnswer):
        _Answer().feed(ok() + b"HTTP/1.1 200 OK\r\n")


def held_until(gate: asyncio.Event):
    """A scan handler that answers clean once ``gate`` is set."""

    async def handler(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response(body=CLEAN, content_type="application/json")

    return handler


def test_a_call_waiting_for_a_free_connection_still_meets_its_deadline() -> None:
    async def main():
        gate = asyncio.Event()
        runner, url = await serve(held_until(gate))
        client = ScannerClient(url, connections=1)
        started = asyncio.get_running_loop().time()
        try:
            first = client.start(b"{}", 5.0)  # holds the only connection
            second = await client.scan(b"{}", 0.2)  # waits in the queue, then times out
            waited = asyncio.get_running_loop().time() - started
            gate.set()
            return await first, second, waited, await client.scan(b"{}", 2.0)
        finally:
            gate.set()
            await client.close()
            await runner.cleanup()

    first, second, waited, third = run(main())
    assert isinstance(first, ScanResult) and isinstance(third, ScanResult)  # the controls, same client and connection
    assert isinstance(second, ScanFailure) and second.reason == "scanner-timeout" and waited < 1.5


def test_a_cancelled_call_keeps_its_connection_until_the_answer_then_reuses_it() -> None:
    async def main():
        server = RawScanner([ok(), ok(), ok(), ok(), ok()])
        url = await server.start()
        client = ScannerClient(url)
        try:
            before = await client.scan(b'{"n": 0}', 2.0)  # a kept-alive connection: the next call is sent at once
            client.start(b'{"n": 1}', 2.0).cancel()  # sent, then the caller gave up (the request was refused meanwhile)
            after = await client.scan(b'{"n": 2}', 2.0)  # the first connection still owes n=1's answer: a second one
            await asyncio.sleep(0.05)
            again = await asyncio.gather(client.scan(b'{"n": 3}', 2.0), client.scan(b'{"n": 4}', 2.0))
        finally:
            await client.close()
            await server.stop()
        return [before, after, *again], server

    outcomes, server = run(main())
    assert all(isinstance(o, ScanResult) for o in outcomes)
    assert sorted(r[-8:] for r in server.requests) == [b'{"n": %d}' % i for i in range(5)]
    assert server.connections == 2  # n=1's answer was read and both connections were reused for n=3 and n=4


def test_a_call_cancelled_before_its_connection_opened_is_never_sent() -> None:
    async def main():
        server = RawScanner([ok()])
        url = await server.start()
        client = ScannerClient(url)
        try:
            client.start(b'{"n": 0}', 2.0).cancel()
            after = await client.scan(b'{"n": 1}', 2.0)
        finally:
            await client.close()
            await server.stop()
        return after, server

    after, server = run(main())
    assert isinstance(after, ScanResult) and [r[-8:] for r in server.requests] == [b'{"n": 1}']


def test_closing_the_client_fails_the_calls_in_flight() -> None:
    async def main():
        gate = asyncio.Event()
        runner, url = await serve(held_until(gate))
        client = ScannerClient(url)
        try:
            pending = client.start(b"{}", 5.0)
            await asyncio.sleep(0.05)  # connected and sent
            await client.close()
            return await asyncio.wait_for(pending, 1.0)
        finally:
            gate.set()
            await runner.cleanup()

    outcome = run(main())
    assert isinstance(outcome, ScanFailure) and outcome.reason == "scanner-unreachable"
