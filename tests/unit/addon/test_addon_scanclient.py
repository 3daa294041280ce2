"""The scanner HTTP client against loopback doubles: every failure is a ScanFailure, never an exception."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from addon.scanclient import ScannerClient
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
