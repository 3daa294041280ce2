"""scanner/service.py: a small scan request is scanned on the event loop, a large one in the pool (same answers)."""

from __future__ import annotations

import base64
import threading

import orjson
import pytest
from test_scanner_http1 import Client, request, serving

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

    async def start():
        return (await service.start(scanner, "127.0.0.1", 0))[1]

    scanner.scan_request = recording  # type: ignore[method-assign]
    try:
        with serving(start) as (server, loop_thread), Client(server.port) as client:
            client.send(request("POST", "/v1/scan", payload, "Content-Type: application/json"))
            status, _, answer = client.response()
    finally:
        del scanner.scan_request
    assert status == 200 and orjson.loads(answer)["verdict"] == ("findings" if secret else "clean")
    assert (threads == [loop_thread]) is inline and threads[0].startswith("scan") is not inline
