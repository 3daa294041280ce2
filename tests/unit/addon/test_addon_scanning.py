"""The scanner contract from the proxy's side: requests built, answers read, decisions taken."""

from __future__ import annotations

import base64
import json

import pytest

from addon.decision import Verdict
from addon.scanning import Finding, ScanFailure, ScanResult, build_request, decide, parse_response

FINDING = {"rule": "github-token", "source": "pattern", "location": "header:authorization", "preview": "ghp_…(40)", "fingerprint": "hm:0123"}
PINNED = {**FINDING, "rule": "operator-secret", "source": "fingerprint"}


def answer(**kw: object) -> bytes:
    return json.dumps({"verdict": "clean", "findings": [], "errors": [], "bytes_scanned": 1, "scan_ms": 0.5, **kw}).encode()


def test_the_request_carries_every_part_raw() -> None:
    body = b"\x1f\x8b raw gzip bytes \xff"
    payload = json.loads(
        build_request(
            request_id="r1",
            agent="alice",
            destination="example.com",
            kind="http",
            method="POST",
            url="https://example.com/p?q=1",
            headers=[(b"Cookie", b"a=1"), (b"X-Odd", b"\xff\xfeok")],
            body=body,
        )
    )
    assert payload == {
        "request_id": "r1",
        "agent": "alice",
        "destination": "example.com",
        "kind": "http",
        "method": "POST",
        "url": "https://example.com/p?q=1",
        "headers": [["Cookie", "a=1"], ["X-Odd", "\\xff\\xfeok"]],
        "body_b64": base64.b64encode(body).decode(),
    }


def test_text_that_is_not_utf_8_still_makes_a_valid_request() -> None:
    """mitmproxy decodes a method with surrogateescape: a lone surrogate cannot be UTF-8, so the json module escapes it."""
    payload = json.loads(build_request(request_id="r1", agent=None, destination="example.com", kind="http",
                                       method="G\udcffT", url="http://example.com/é", headers=[], body=b""))
    assert payload["method"] == "G\udcffT" and payload["url"] == "http://example.com/é"


ANSWERS = [
    ("clean", 200, answer(), "clean"),
    ("findings", 200, answer(verdict="findings", findings=[FINDING]), "findings"),
    ("invalid", 200, answer(verdict="invalid", errors=[{"code": "undecodable-body", "detail": "gzip"}]), "invalid"),
    ("status-500", 500, answer(), "scanner-status"),
    ("status-413", 413, b"{}", "scanner-status"),
    ("not-json", 200, b"<html>oops</html>", "scanner-bad-answer"),
    ("no-verdict", 200, b'{"findings": []}', "scanner-bad-answer"),
    ("unknown-verdict", 200, answer(verdict="probably-fine"), "scanner-bad-answer"),
    ("findings-not-list", 200, answer(verdict="findings", findings="ghp"), "scanner-bad-answer"),
    ("finding-without-rule", 200, answer(verdict="findings", findings=[{"location": "body"}]), "scanner-bad-answer"),
    ("findings-but-none", 200, answer(verdict="findings", findings=[]), "scanner-bad-answer"),
    ("json-array", 200, b"[]", "scanner-bad-answer"),
    ("nan", 200, answer().replace(b'"scan_ms":0.5', b'"scan_ms":NaN').replace(b'"scan_ms": 0.5', b'"scan_ms": NaN'),
     "scanner-bad-answer"),
]


@pytest.mark.parametrize(("row", "status", "body", "expected"), ANSWERS, ids=[a[0] for a in ANSWERS])
def test_parse_response(row: str, status: int, body: bytes, expected: str) -> None:
    outcome = parse_response(status, body)
    got = outcome.reason if isinstance(outcome, ScanFailure) else outcome.verdict
    assert got == expected


CLEAN = ScanResult("clean")
FOUND = ScanResult("findings", (Finding("github-token", "pattern", "body", "hm:1"),))
FOUND_PINNED = ScanResult("findings", (Finding("operator-secret", "fingerprint", "body", "hm:2"),))
INVALID = ScanResult("invalid", errors=("undecodable-body",))
FAILED = ScanFailure("scanner-timeout", "slow")

DECISIONS = [
    ("clean-enforce", CLEAN, "enforce", False, Verdict.ALLOW, "clean"),
    ("found-enforce", FOUND, "enforce", False, Verdict.BLOCK, "secret-detected"),
    ("found-report", FOUND, "report", False, Verdict.REPORT, "secret-reported"),
    ("fingerprint-report", FOUND_PINNED, "report", False, Verdict.BLOCK, "secret-detected"),
    ("invalid-enforce", INVALID, "enforce", False, Verdict.ERROR, "scan-invalid"),
    ("invalid-report", INVALID, "report", False, Verdict.ERROR, "scan-invalid"),
    ("failure-enforce", FAILED, "enforce", False, Verdict.ERROR, "scanner-timeout"),
    ("failure-report", FAILED, "report", False, Verdict.ERROR, "scanner-timeout"),
    ("failure-fail-open", FAILED, "enforce", True, Verdict.ALLOW, "unsafe-fail-open:scanner-timeout"),
    ("invalid-fail-open", INVALID, "enforce", True, Verdict.ALLOW, "unsafe-fail-open:scan-invalid"),
    ("found-fail-open", FOUND, "enforce", True, Verdict.BLOCK, "secret-detected"),  # fail-open is for failures only
]


@pytest.mark.parametrize(("row", "outcome", "mode", "fail_open", "verdict", "reason"), DECISIONS, ids=[d[0] for d in DECISIONS])
def test_decide(row: str, outcome: object, mode: str, fail_open: bool, verdict: Verdict, reason: str) -> None:
    decision = decide(outcome, mode, fail_open)  # type: ignore[arg-type]
    assert (decision.verdict, decision.reason) == (verdict, reason)
