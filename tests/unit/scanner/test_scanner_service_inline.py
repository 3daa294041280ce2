"""scanner/service.py: a small scan request is scanned on the event loop, a large one in the pool (same answers)."""

from __future__ import annotations

import asyncio
import base64
import threading

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from scanner import service
from scanner.core import Scanner

TOKEN = "ghp_" + "Zq8LmN2pR4sT6vW8xY0aB1cD3eF5gH7jK9mQ"


def _request(body: bytes) -> bytes:
    return orjson.dumps({"request_id": "t", "agent": None, "destination": "api.test", "kind": "http", "method": "POST",
                         "url": "https://api.test/v1", "headers": [["content-type", "text/plain"]],
                         "body_b64": base64.b64encode(body).decode()})


@pytest.mark.parametrize(("size", "inline"), [(100, True), (service.INLINE_MAX, False)])
@pytest.mark.parametrize("secret", [False, True])
def test_where_a_scan_runs_and_that_its_answer_is_the_same(scanner: Scanner, size: int, inline: bool, secret: bool) -> None:
    threads: list[str] = []
    original = scanner.scan_request

    def recording(req):
        threads.append(threading.current_thread().name)
        return original(req)

    body = (TOKEN.encode() if secret else b"") + b"x" * size
    payload = _request(body)
    assert (len(payload) <= service.INLINE_MAX) is inline

    async def main():
        scanner.scan_request = recording  # type: ignore[method-assign]
        try:
            async with TestClient(TestServer(service.make_app(scanner))) as client:
                response = await client.post("/v1/scan", data=payload, headers={"content-type": "application/json"})
                return response.status, await response.json(), threading.current_thread().name
        finally:
            del scanner.scan_request

    status, answer, loop_thread = asyncio.run(main())
    assert status == 200 and answer["verdict"] == ("findings" if secret else "clean")
    assert (threads == [loop_thread]) is inline and threads[0].startswith("scan") is not inline
