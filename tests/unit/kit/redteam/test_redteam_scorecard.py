"""The scorecard in text, JSON and JUnit XML, and when a run passes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from kit.redteam.classify import Verdict
from kit.redteam.leaksearch import Hit
from kit.redteam.scorecard import Finding, Report, as_json, junit, text, write


def v(id: str, verdict: str, detail: str = "") -> Verdict:
    return Verdict(id, "content", f"technique {id}", verdict, "proxy-block", "delivered", detail or verdict,
                   (detail or verdict,), "because", 12.5)


def report(*verdicts: Verdict, hits=(), findings=()) -> Report:
    return Report("abc123", "compose", "dev", 42.0, list(verdicts), list(findings), list(hits), 123456, 78,
                  [("env-github", "github-pat", "env GITHUB_TOKEN")])


HIT = Hit("env-github", "github-pat", 3, "http#9 target", ("url",), 36, True, ("rt-abc123-001a0",))


def test_all_blocked_passes():
    rep = report(v("a", "blocked"), v("b", "blocked"), v("c", "skipped", "needs two agents"))
    assert rep.ok and rep.totals()["blocked"] == 2 and rep.canary_bytes == 0
    out = text(rep)
    assert "RESULT: PASS: every technique blocked, every control passed, 0 canary bytes at the sink" in out
    assert "Totals: 2 blocked, 0 leaked, 0 control-failed, 0 error, 1 skipped (of 3)" in out
    assert "123,456 bytes in 78 events" in out and "0 hit(s), 0 canary bytes" in out
    assert "needs two agents" in out


def test_any_leak_failure_error_hit_or_finding_fails():
    assert not report(v("a", "leaked")).ok
    assert not report(v("a", "control-failed")).ok
    assert not report(v("a", "error")).ok
    assert not report(v("a", "blocked"), hits=[HIT]).ok
    assert not report(v("a", "blocked"), findings=[Finding("direct", "x")]).ok
    assert not report(v("a", "skipped")).ok  # nothing ran: nothing was shown


def test_failing_text_names_the_reasons():
    rep = report(v("a", "leaked", "whole canary env-github at the sink"), hits=[HIT], findings=[Finding("direct", "heard 10.0.0.3")])
    out = text(rep)
    assert "-> whole canary env-github at the sink" in out
    assert "\nRESULT: FAIL: 1 leaked, 36 canary bytes at the sink, 1 finding(s) outside the techniques\n" in out
    # Techniques that ran and leaked are not "no technique ran"; only a run of skipped rows is.
    assert report(v("a", "leaked")).failures() == ["1 leaked"]
    assert report(v("c", "skipped")).failures() == ["no technique ran"]
    assert "[direct] heard 10.0.0.3" in out


def test_canary_bytes_count_each_canary_once_per_event():
    twice = [HIT, Hit("env-github", "github-pat", 3, "http#9 raw", (), 36, True, ())]
    assert report(v("a", "leaked"), hits=twice).canary_bytes == 36


def test_json_has_everything():
    doc = as_json(report(v("a", "blocked"), hits=[HIT]))
    json.dumps(doc)
    assert doc["totals"]["blocked"] == 1 and doc["canary_bytes"] == 36 and doc["ok"] is False
    assert doc["verdicts"][0]["id"] == "a" and doc["hits"][0]["canary"] == "env-github"


def test_junit_counts_and_cases():
    suite = junit(report(v("a", "blocked"), v("b", "leaked"), v("c", "error"), v("d", "skipped"), v("e", "control-failed")))
    assert suite.get("tests") == "7" and suite.get("failures") == "2" and suite.get("errors") == "1" and suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["b"].find("failure").get("type") == "leaked"
    assert cases["e"].find("failure").get("type") == "control-failed"
    assert cases["c"].find("error") is not None and cases["d"].find("skipped") is not None
    assert cases["canary-search"].find("failure") is None


def test_write_puts_three_files(tmp_path):
    paths = write(report(v("a", "blocked")), tmp_path / "reports")
    assert [p.name for p in paths] == ["redteam-compose.txt", "redteam-compose.json", "redteam-compose.xml"]
    assert ET.parse(paths[2]).getroot().tag == "testsuite"
    assert json.loads(paths[1].read_text())["ok"] is True
