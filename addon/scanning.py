"""The scanner contract (``POST /v1/scan``, docs/architecture.md) and what its answer means.

Building the request, reading the answer and turning it into a decision are
pure functions; the HTTP call lives in :mod:`addon.scanclient`. Everything that
is not a well-formed 200 answer is a failure, and a failure blocks unless the
policy says ``scan.unsafe_fail_open``.

Modes: ``enforce`` blocks on findings; ``report`` lets findings through and logs
them, except exact-value fingerprints of the operator's real secrets, which
block in every mode; ``off`` does not call the scanner at all.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from addon.decision import Decision, Verdict, allow, block, error

VERDICTS = ("clean", "findings", "invalid")
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps with options builds one per call


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    source: str
    location: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    verdict: str  # one of VERDICTS
    findings: tuple[Finding, ...] = ()
    errors: tuple[str, ...] = ()  # error codes, for "invalid"
    scan_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ScanFailure:
    reason: str  # scanner-unreachable, scanner-timeout, scanner-status, scanner-bad-answer, body-too-large, ...
    detail: str


Outcome = ScanResult | ScanFailure


def _text(raw: bytes) -> str:
    # Keep every ASCII byte as is (secrets are ASCII) and show the rest escaped,
    # rather than dropping or replacing bytes that could hide a boundary.
    return raw.decode("utf-8", "backslashreplace")


def build_request(
    *,
    request_id: str,
    agent: str | None,
    destination: str,
    kind: str,
    method: str,
    url: str,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
) -> bytes:
    head = {
        "request_id": request_id,
        "agent": agent,
        "destination": destination,
        "kind": kind,
        "method": method,
        "url": url,
        "headers": [[_text(k), _text(v)] for k, v in headers],
    }
    # Base64 needs no JSON escaping: splice it in rather than have the encoder
    # scan a megabyte-long string character by character (several ms per MB).
    try:
        encoded = orjson.dumps(head)
    except orjson.JSONEncodeError:  # a lone surrogate (undecodable method bytes): the json module escapes it
        encoded = _ENCODER.encode(head).encode()
    return b"".join((encoded[:-1], b',"body_b64":"', binascii.b2a_base64(body, newline=False), b'"}'))


def parse_response(status: int, body: bytes) -> Outcome:
    if status != 200:
        return ScanFailure("scanner-status", f"the scanner answered HTTP {status}")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ScanFailure("scanner-bad-answer", "the scanner's answer is not JSON")
    if not isinstance(data, dict) or data.get("verdict") not in VERDICTS:
        return ScanFailure("scanner-bad-answer", "the scanner's answer has no valid verdict")
    findings = _findings(data.get("findings", []))
    errors = _errors(data.get("errors", []))
    if findings is None or errors is None:
        return ScanFailure("scanner-bad-answer", "the scanner's findings or errors are malformed")
    if data["verdict"] == "findings" and not findings:
        return ScanFailure("scanner-bad-answer", "the scanner reported findings but listed none")
    scan_ms = data.get("scan_ms")
    scan_ms = float(scan_ms) if isinstance(scan_ms, int | float) and not isinstance(scan_ms, bool) else None
    return ScanResult(data["verdict"], findings, errors, scan_ms)


def _findings(items: object) -> tuple[Finding, ...] | None:
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("rule"), str):
            return None
        out.append(
            Finding(
                rule=item["rule"],
                source=str(item.get("source", "")),
                location=str(item.get("location", "")),
                fingerprint=str(item.get("fingerprint", "")),
            )
        )
    return tuple(out)


def _errors(items: object) -> tuple[str, ...] | None:
    if not isinstance(items, list):
        return None
    codes = []
    for item in items:
        if not isinstance(item, dict):
            return None
        codes.append(str(item.get("code", "unknown")))
    return tuple(codes)


def decide(outcome: Outcome, mode: str, fail_open: bool) -> Decision:
    """What the proxy does with a scan outcome under ``mode`` (enforce / report)."""
    if isinstance(outcome, ScanFailure):
        return _failure(outcome.reason, outcome.detail, fail_open)
    if outcome.verdict == "invalid":
        codes = ", ".join(outcome.errors) or "unspecified"
        return _failure("scan-invalid", f"part of the request could not be scanned ({codes})", fail_open)
    if outcome.verdict == "clean":
        return allow("clean", "scan")
    rules = ",".join(sorted({f.rule for f in outcome.findings}))
    where = ", ".join(sorted({f.location for f in outcome.findings}))
    detail = f"secret found ({rules}) in {where}; the request was not sent"
    if mode == "report":
        pinned = [f for f in outcome.findings if f.source == "fingerprint"]
        if not pinned:
            return Decision(Verdict.REPORT, "secret-reported", f"scan:{rules}", "findings logged (report mode)")
        rules = ",".join(sorted({f.rule for f in pinned}))
        detail = f"a registered secret value ({rules}) is blocked in every mode; the request was not sent"
    return block("secret-detected", f"scan:{rules}", detail)


def _failure(reason: str, detail: str, fail_open: bool) -> Decision:
    if fail_open:
        return allow(f"unsafe-fail-open:{reason}", "scan.unsafe_fail_open", detail)
    return error(reason, "scan", detail + "; blocked (the proxy fails closed)")
