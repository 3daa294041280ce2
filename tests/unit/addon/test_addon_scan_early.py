"""A bodiless request's scan starts at requestheaders; anything with a body is scanned at request. One call each."""

from __future__ import annotations

import asyncio

import pytest
from addon_harness import refusal, request, run

from addon.scanning import Finding, ScanResult

FOUND = ScanResult("findings", (Finding("github-token", "pattern", "url:query:q", "hm:1"),))


@pytest.mark.parametrize(
    ("method", "headers", "body", "early"),
    [
        ("GET", [], b"", True),
        ("DELETE", [(b"Content-Length", b"0")], b"", True),
        ("POST", [], b'{"a": 1}', False),  # the helper adds its Content-Length
        ("POST", [(b"Transfer-Encoding", b"chunked")], b"", False),
    ],
    ids=["get", "content-length-0", "body", "chunked"],
)
def test_when_the_scan_starts_and_that_it_is_one_call(cage, method, headers, body, early) -> None:
    async def main():
        c = cage().configure()
        flow = request(method=method, path="/p?q=1", headers=headers, body=body)
        await c.hook("requestheaders", flow)
        await asyncio.sleep(0)  # let a started scan reach the scanner
        at_headers = len(c.scanner.calls)
        await c.hook("request", flow)
        return c, flow, at_headers

    c, flow, at_headers = run(main())
    assert flow.response is None and len(c.scanner.calls) == 1
    assert at_headers == (1 if early else 0)
    assert c.audit()[-1]["decision"] == "allow"


def test_an_early_scan_that_finds_a_secret_blocks_at_request(cage) -> None:
    async def main():
        c = cage().configure()
        c.scanner.answer = FOUND
        return c, await c.send(request(path="/p?q=ghp_x"))

    c, flow = run(main())
    assert refusal(flow)["reason"] == "secret-detected" and len(c.scanner.calls) == 1


def test_a_body_that_comes_after_bodiless_framing_is_refused(cage) -> None:
    """It cannot happen with well-formed HTTP/1; if it did, the early scan saw no body: fail closed."""
    async def main():
        c = cage().configure()
        flow = request(path="/p")
        await c.hook("requestheaders", flow)
        flow.request.raw_content = b"smuggled"
        await c.hook("request", flow)
        return flow

    assert refusal(run(main()))["reason"] == "internal-error"
