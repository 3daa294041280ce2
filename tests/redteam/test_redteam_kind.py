"""The whole red-team catalog against a real cage on kind (live: marker ``kind``).

Runs only where kind can bring a cluster up (YOLO_CAGE_KIND=1, kind, Docker
and a registry for kind's node image and Calico's images; tests/conftest.py
skips it elsewhere with the reason). The module starts its own cluster
``yc-rt-<run id>`` with the red team's cage and attacker world
(kit.redteam.kind_cage), runs the catalog once through ``kubectl exec``, makes
each row a test (the same KNOWN_GAPS as Compose: the proxy and scanner are the
same), checks that what ran is what the offline tests evaluated, weakens the
cage twice to see the scorecard fail, and deletes the cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import yaml

from kit import kindrender
from kit import settings as settings_mod
from kit.names import LABEL_TEST
from kit.redteam import catalog, cli, kind_cage, kind_render, runner, scorecard
from kit.redteam.classify import BLOCKED, LEAKED
from kit.redteam.scorecard import text
from tests.redteam.conftest import _SCORECARDS
from tests.redteam.test_redteam_compose import DIRECT, KNOWN_GAPS, _rows
from tests.redteam.test_redteam_compose import test_no_canary_at_the_sink_outside_known_gaps as no_stray_canary_or_traffic

pytestmark = [pytest.mark.kind, pytest.mark.redteam, pytest.mark.slow, pytest.mark.timeout(3600)]
RUN_ID = secrets.token_hex(3)
WEAK_AGENT = kind_cage.AGENTS[1]


@pytest.fixture(scope="module")
def kind_redteam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kind_cage.RedTeamKindBackend]:
    previous = os.environ.get("YOLO_CAGE_STATE_DIR")
    os.environ["YOLO_CAGE_STATE_DIR"] = str(tmp_path_factory.mktemp("redteam-kind-state"))
    # The user's settings give kind's pins (node image, Calico, an air-gapped manifest); names are the run's own.
    backend = kind_cage.backend_for(settings_mod.load(), cluster=f"yc-rt-{RUN_ID}", project=f"ycrt-{RUN_ID}",
                                    test_labels={LABEL_TEST: RUN_ID})
    try:
        backend.up()
        yield backend
    finally:
        try:
            kind_cage.remove(backend)
        finally:
            if previous is None:
                os.environ.pop("YOLO_CAGE_STATE_DIR", None)
            else:
                os.environ["YOLO_CAGE_STATE_DIR"] = previous


@pytest.fixture(scope="module")
def kind_report(kind_redteam) -> scorecard.Report:
    report = runner.run(kind_redteam.world())
    scorecard.write(report, cli.REPORTS)
    _SCORECARDS.append(scorecard.text(report))
    return report


@pytest.mark.parametrize("technique_id", list(_rows()))  # the same KNOWN_GAPS as Compose, strict
def test_technique_is_blocked_on_kind(kind_report, technique_id):
    [verdict] = [v for v in kind_report.verdicts if v.id == technique_id]
    assert verdict.verdict == BLOCKED, "\n  ".join([f"{verdict.id}: {verdict.verdict}: {verdict.detail}",
                                                    f"attack {verdict.attack}, control {verdict.control}", *verdict.evidence])


def test_every_row_ran_on_kind(kind_report):
    """kind's catalog has a meaning for every row: none may be skipped (kit/redteam/kind_catalog.py)."""
    assert [v.id for v in kind_report.verdicts if v.verdict == "skipped"] == []
    assert kind_report.notes == ["net-metadata: probe a1 not sent: fd00:ec2::254 is not an address of this machine, "
                                 "and no packet of the red team may leave it"]


def test_controls_all_pass_on_kind(kind_report):
    failed = [v for v in kind_report.verdicts if v.verdict in ("control-failed", "error")]
    assert not failed, "\n".join(f"{v.id}: {v.verdict}: {v.detail}" for v in failed)


def test_no_canary_and_no_stray_traffic_outside_known_gaps(kind_report):
    no_stray_canary_or_traffic(kind_report)  # the Compose suite's check, on kind's report


def test_scorecard_reports_are_written_for_kind(kind_report):
    stem = cli.REPORTS / "redteam-kind"
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert doc["run_id"] == kind_report.run_id and doc["backend"] == "kind"
    assert int(ET.parse(stem.with_suffix(".xml")).getroot().get("tests")) == len(catalog.CATALOG) + 2


def test_the_cluster_holds_the_policies_the_offline_tests_evaluated(kind_redteam, kind_report):
    """What the live run attacked is what kit.redteam.kind_flows evaluated: the rendered overlay's policies."""
    world = kind_redteam.world()
    live = {p["metadata"]["name"]: p["spec"] for p in world._json("-n", kind_redteam.project, "get", "networkpolicies")["items"]}
    rendered = kindrender.load_all((kind_redteam.state_dir() / "rendered.yaml").read_text())
    assert live == {d["metadata"]["name"]: d["spec"] for d in rendered if d["kind"] == "NetworkPolicy"}
    assert "redteam-proxy-egress-to-sink" in live and "proxy-egress-to-internet" not in live


# --- deliberately weakened cages: the scorecard must fail ---------------------------------------


def test_agents_with_open_egress_fail_the_scorecard(kind_redteam, kind_report):
    """A policy that lets agents send anywhere (the sink included): direct attacks must show as leaks."""
    world = kind_redteam.world()
    weak = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "weakened-agent-egress", "namespace": kind_redteam.project, "labels": {LABEL_TEST: RUN_ID}},
            "spec": {"podSelector": {"matchLabels": {"yolo-cage.role": "agent"}}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"namespaceSelector": {}}]}]}}  # every pod: the sink, nothing off this machine
    world.kubectl("apply", "-f", "-", input=yaml.safe_dump(weak))
    try:
        _until_reached(kind_redteam, WEAK_AGENT, kind_render.SINK_SERVICE_IP, 80)  # Calico programs it asynchronously
        report = runner.run(world, runner.Options(agent=WEAK_AGENT, ids=DIRECT))
    finally:
        world.kubectl("-n", kind_redteam.project, "delete", "networkpolicy", "weakened-agent-egress")
    verdicts = {v.id: v.verdict for v in report.verdicts}
    assert not report.ok, text(report)
    assert verdicts["net-tcp-sink-ip-80"] == LEAKED and verdicts["net-proxy-bypass-python"] == LEAKED, text(report)
    assert report.canary_bytes > 0, text(report)


def _until_reached(backend, agent: str, host: str, port: int, seconds: float = 60) -> None:
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=3).close()"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if backend.exec(agent, ["python3", "-c", probe], timeout=30).returncode == 0:
            return
        time.sleep(2)
    pytest.fail(f"the weakened policy never let {agent} reach {host}:{port}: the test would prove nothing")


def test_scanner_fail_open_fails_the_scorecard_on_kind(kind_redteam, kind_report):
    """`scan.unsafe_fail_open: true` with the scanner stopped: the canary must show as leaked."""
    original = kind_redteam.policy_file
    weak = original.with_name("policy.fail-open.yaml")
    weak.write_text(original.read_text() + "scan:\n  unsafe_fail_open: true\n")
    kind_redteam.policy_file = weak
    try:
        kind_redteam.up()  # the policy is part of the restart digest: the cage's pods restart on it
        report = runner.run(kind_redteam.world(), runner.Options(agent=WEAK_AGENT, ids=["fault-scanner-stopped"]))
    finally:
        kind_redteam.policy_file = original
        kind_redteam.up()
    [verdict] = report.verdicts
    assert verdict.verdict == LEAKED, text(report)
    assert report.canary_bytes > 0 and not report.ok
