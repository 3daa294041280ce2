"""The audit log: one line per decision, every field, and no secret value in any of them."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from addon.audit import REDACTED, AuditLog, Event, record
from addon.decision import allow, block
from addon.scanning import Finding

SECRET = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def test_a_clean_allowed_request_is_recorded_as_it_was() -> None:
    event = Event(
        request_id="r1", kind="http", decision=allow("clean", "scan"), agent="alice", client="10.0.0.2:5000",
        method="POST", scheme="https", host="api.example.com", port=443, path="/v1/items", scanned=True,
        scan_mode="enforce", address="93.184.216.34", request_bytes=12, scan_ms=1.234, total_ms=3.456,
    )
    line = record(event, datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    assert line == {
        "time": "2026-01-02T03:04:05.678Z", "request_id": "r1", "kind": "http", "agent": "alice",
        "client": "10.0.0.2:5000", "method": "POST", "scheme": "https", "host": "api.example.com", "port": 443,
        "path": "/v1/items", "decision": "allow", "reason": "clean", "rule": "scan", "findings": [],
        "scan_mode": "enforce", "address": "93.184.216.34", "request_bytes": 12, "scan_ms": 1.23, "total_ms": 3.46,
        "credentials": [], "placeholders": [],
    }


def test_paths_and_hosts_with_findings_are_redacted() -> None:
    findings = (Finding("github-token", "pattern", "url:path", "hm:1"), Finding("github-token", "pattern", "url:host", "hm:1"))
    event = Event(request_id="r", kind="http", decision=block("secret-detected"), host=f"{SECRET}.evil.example",
                  path=f"/x/{SECRET}", scanned=True, findings=findings)
    line = record(event)
    assert line["path"] == REDACTED and line["host"] == REDACTED
    assert SECRET not in json.dumps(line)


def test_unscanned_values_and_finding_locations_lose_token_shaped_runs() -> None:
    findings = (Finding("github-token", "pattern", f"url:query:{SECRET}", "hm:1"), Finding("x", "pattern", "header:x-api-key", "hm:2"))
    event = Event(request_id="r", kind="http", decision=block("blocklisted-host"), host="pastebin.com",
                  path=f"/raw/{SECRET}/x", scanned=False, findings=findings)
    line = record(event)
    assert line["path"] == f"/raw/ghp_{REDACTED}/x"  # a provider prefix is not the secret
    assert line["host"] == "pastebin.com"
    assert [f["location"] for f in line["findings"]] == [f"url:query:ghp_{REDACTED}", "header:x-api-key"]
    assert SECRET not in json.dumps(line)


def test_the_log_appends_whole_lines_from_many_writers(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.jsonl"
    log = AuditLog(str(path))
    log.write({"n": 0})
    threads = [threading.Thread(target=lambda i=i: [log.write({"n": i, "pad": "x" * 5000}) for _ in range(50)]) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    again = AuditLog(str(path))  # reopening appends, never truncates
    again.write({"n": 99})
    again.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 202
    assert [json.loads(x)["n"] for x in lines][0] == 0 and json.loads(lines[-1])["n"] == 99


def test_audit_time_stamps_are_utc_milliseconds_across_second_boundaries(monkeypatch) -> None:
    import datetime as dt
    import time as time_module

    from addon.audit import _Clock

    clock = _Clock()
    for instant in (1764534856.0, 1764534856.4567, 1764534856.9999, 1764534857.0004, 1764534920.5, 1767225599.9991):
        monkeypatch.setattr(time_module, "time", lambda instant=instant: instant)
        expected = dt.datetime.fromtimestamp(instant, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert clock.stamp() == expected, instant  # the cached second is replaced when the second changes


@pytest.mark.parametrize(
    "value",
    ["plain /path", "caf\u00e9", "\u202etxt.exe", "tab\tand\nnewline\x00", "lone \udcff surrogate"],
    ids=["ascii", "accent", "bidi-override", "controls", "surrogate"],
)
def test_an_audit_line_is_ascii_json_whatever_it_holds(value: str) -> None:
    from addon.audit import encode_line

    entry = {"path": value, "scan_ms": 0.07, "port": 443, "findings": [], "agent": None, "scanned": True}
    line = encode_line(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    assert json.loads(line) == entry
    assert line == json.dumps(entry, separators=(",", ":")).encode() + b"\n"  # the same bytes as the json module
