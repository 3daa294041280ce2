"""The red-team catalog against a real Compose cage: every technique must end blocked.

One test per catalog row (its verdict comes from the session's single run, see
conftest.py), the sink's canary search, and two deliberately weakened cages
that must make the scorecard fail. A row that leaks because of a gap in
another component is not weakened or hidden: it is listed in KNOWN_GAPS with
what leaked and through which component, as a strict xfail (it fails the suite
again the day it starts passing, so the list cannot go stale).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from kit.redteam import catalog, cli, runner, testcage
from kit.redteam.classify import BLOCKED, LEAKED, SKIPPED
from kit.redteam.scorecard import text
from tests.redteam.conftest import world

pytestmark = [pytest.mark.docker, pytest.mark.redteam, pytest.mark.timeout(900)]

# technique id -> the gap (component, what leaks). Each entry is a real finding of the red team.
KNOWN_GAPS: dict[str, str] = {}


def _rows():
    for t in catalog.CATALOG:
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[t.id])] if t.id in KNOWN_GAPS else []
        yield pytest.param(t.id, id=t.id, marks=marks)


@pytest.mark.parametrize("technique_id", list(_rows()))
def test_technique_is_blocked(redteam_report, technique_id):
    verdict = next(v for v in redteam_report.verdicts if v.id == technique_id)
    if verdict.verdict == SKIPPED:
        pytest.skip(verdict.detail)
    assert verdict.verdict == BLOCKED, (
        f"{technique_id}: {verdict.verdict}: {verdict.detail}\n  attack: {verdict.attack}\n  control: {verdict.control}\n  "
        + "\n  ".join(verdict.evidence))


def test_no_canary_at_the_sink_outside_known_gaps(redteam_report):
    index = {t.id: i for i, t in enumerate(catalog.CATALOG)}
    allowed = {f"{index[g]:03d}" for g in KNOWN_GAPS}
    # markers are rt-<run>-<row index>(a|c)<k>
    stray = [h for h in redteam_report.hits if not any(m.split("-")[2][:3] in allowed for m in h.markers)]
    assert not stray, "\n".join(f"{h.canary} in {h.where} ({'+'.join(h.transforms) or 'as is'})" for h in stray)
    assert not redteam_report.findings, "\n".join(f"[{f.kind}] {f.detail}" for f in redteam_report.findings)


@pytest.mark.xfail(bool(KNOWN_GAPS), strict=True, reason="canary bytes reach the sink through the KNOWN_GAPS rows")
def test_zero_canary_bytes_at_the_sink(redteam_report):
    assert redteam_report.canary_bytes == 0, text(redteam_report)


def test_scorecard_reports_are_written(redteam_report):
    stem = cli.REPORTS / "redteam-compose"
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert doc["run_id"] == redteam_report.run_id and len(doc["verdicts"]) == len(catalog.CATALOG)
    suite = ET.parse(stem.with_suffix(".xml")).getroot()
    assert int(suite.get("tests")) == len(catalog.CATALOG) + 2
    assert "RESULT:" in stem.with_suffix(".txt").read_text()


def test_the_sink_is_a_testcontainers_container_labelled_for_this_run(redteam_cage):
    # The attacker's world is started through testcontainers; clean-up relies on our own label.
    labels = redteam_cage.sink.labels
    assert labels.get("org.testcontainers") == "true"
    assert labels.get("yolo-cage.test") == redteam_cage.run_id


def test_controls_all_pass(redteam_report):
    failed = [v for v in redteam_report.verdicts if v.verdict in ("control-failed", "error")]
    assert not failed, "\n".join(f"{v.id}: {v.verdict}: {v.detail}" for v in failed)


# --- deliberately weakened cages: the scorecard must fail ---------------------------------------

DIRECT = ["net-tcp-sink-ip-80", "net-udp-sink-ip", "net-icmp-sink-ip", "net-proxy-bypass-python"]
# The weakened cages are attacked from the second agent: the scanner remembers what an
# agent sent (its split-across-requests detector), and the first agent has just sent
# the whole catalog.
WEAK_AGENT = testcage.AGENTS[1]


def test_agent_on_the_egress_network_fails_the_scorecard(redteam_cage, redteam_report):
    """Attach the agent to the proxy's egress network (where the sink is): direct attacks must show as leaks."""
    agent = redteam_cage.backend.container_for(WEAK_AGENT)
    egress = redteam_cage.client.networks.get(f"{redteam_cage.backend.project}_egress")
    egress.connect(agent)
    try:
        report = runner.run(world(redteam_cage), runner.Options(agent=WEAK_AGENT, ids=DIRECT))
    finally:
        egress.disconnect(agent)
    verdicts = {v.id: v.verdict for v in report.verdicts}
    assert not report.ok, text(report)
    # TCP, UDP, ICMP and HTTP each reach the sink (measured: all four leak, canaries counted).
    assert verdicts == dict.fromkeys(DIRECT, LEAKED), text(report)
    assert report.canary_bytes > 0, text(report)


def test_scanner_fail_open_fails_the_scorecard(redteam_cage, redteam_report):
    """`scan.unsafe_fail_open: true` with the scanner stopped: the canary must show as leaked."""
    original = redteam_cage.policy_text()
    redteam_cage.reconfigure(original + "scan:\n  unsafe_fail_open: true\n")
    try:
        report = runner.run(world(redteam_cage), runner.Options(agent=WEAK_AGENT, ids=["fault-scanner-stopped"]))
    finally:
        redteam_cage.reconfigure(original)
    [verdict] = report.verdicts
    assert verdict.verdict == LEAKED, text(report)
    assert report.canary_bytes > 0 and not report.ok
