"""Every catalog row has a meaning on kind (or a stated reason), and kind's forms of the rows
respect what kind's policies allow an agent: only TCP to the proxy's port."""

from __future__ import annotations

import dataclasses

import pytest

from kit.redteam import catalog, kind_catalog, runner
from kit.redteam.catalog import CATALOG, is_direct
from kit.redteam.world import AGENT, WITNESS
from tests.unit.kit.redteam.test_redteam_runner import TARGETS

ROWS = [pytest.param(t, id=t.id) for t in CATALOG]
SECRET = ("{{c:", "{{f:", "{{envdump")


def test_every_row_has_a_kind_entry_and_no_entry_is_stale():
    assert set(kind_catalog.ROWS) == {t.id for t in CATALOG}
    for row_id, row in kind_catalog.ROWS.items():
        assert row.mode in kind_catalog.MODES, row_id
        assert len(row.why) > 20, f"{row_id}: say what the row means on kind"


@pytest.mark.parametrize("technique", ROWS)
def test_adapt_keeps_the_rows_identity_and_judgement(technique):
    adapted = kind_catalog.adapt(technique)
    if isinstance(adapted, str):
        assert kind_catalog.ROWS[technique.id].mode == kind_catalog.NOT_APPLICABLE
        return
    kept = ("id", "channel", "why", "accept", "evidence", "control_at", "fault", "offhost", "expected", "stateful")
    assert {f: getattr(adapted, f) for f in kept} == {f: getattr(technique, f) for f in kept}
    assert adapted.carries_canary == technique.carries_canary  # an adapted attack still carries what it carried
    row = kind_catalog.ROWS[technique.id]
    if row.mode == kind_catalog.SAME:
        assert adapted == technique


def _agent_control_allowed_on_kind(probe: dict) -> bool:
    """What a control may use in an agent on kind: TCP to the proxy (directly, or any client through it),
    or nothing of the network (its own loopback, /etc/hosts)."""
    if probe["op"] in ("tcp", "ssh"):
        return probe["host"] in ("${proxy_ip}", "${proxy_host}", "::ffff:${proxy_ip}") and probe["port"] == "${proxy_port}"
    if probe["op"] == "icmp":
        return probe["host"] == "127.0.0.1"
    if probe["op"] == "resolve":
        return probe["name"] == "${proxy_host}"
    return not is_direct(probe)  # http, curl, ws, doh, git through the proxy


@pytest.mark.parametrize("technique", ROWS)
def test_agent_side_controls_on_kind_use_only_what_an_agent_may(technique):
    adapted = kind_catalog.adapt(technique)
    if isinstance(adapted, str):
        return
    for probe in adapted.control:
        if probe.get("where", AGENT) == AGENT:
            assert _agent_control_allowed_on_kind(probe), (technique.id, probe)


def test_the_check_above_catches_the_compose_controls_kind_cannot_carry():
    """Control of the test above: Compose's own controls for these rows would fail on kind, and are caught."""
    for row_id in ("net-icmp-sink-ip", "net-udp-sink-ip", "dns-a-resolver", "net-other-agent-icmp"):
        assert not all(_agent_control_allowed_on_kind(p) for p in catalog.by_id(row_id).control), row_id


@pytest.mark.parametrize("technique", ROWS)
def test_witness_probes_are_clean_controls(technique):
    adapted = kind_catalog.adapt(technique)
    if isinstance(adapted, str):
        return
    assert all(p.get("where", AGENT) == AGENT for p in adapted.attack), "attacks run in the agent, always"
    for probe in adapted.control:
        if probe.get("where") == WITNESS:
            assert not any(s in str(probe) for s in SECRET), (technique.id, probe)
    if kind_catalog.ROWS[technique.id].mode == kind_catalog.WITNESS_CONTROL:
        assert any(p.get("where") == WITNESS for p in adapted.control), technique.id
        assert adapted.attack == technique.attack


def test_no_icmp_is_aimed_at_a_service_address_on_kind():
    """A Service address carries only its ports: ICMP to ${sink_ip} or ${proxy_host} would prove nothing there."""
    for technique in CATALOG:
        adapted = kind_catalog.adapt(technique)
        for probe in (*adapted.attack, *adapted.control):
            if probe["op"] == "icmp":
                assert probe["host"] not in ("${sink_ip}", "${proxy_host}"), technique.id


def test_a_row_without_meaning_is_reported_with_its_reason_never_dropped(monkeypatch):
    row = catalog.by_id("net-host-gateway")
    reason = "there is no such thing here"
    monkeypatch.setitem(kind_catalog._ROWS, row.id, kind_catalog.KindRow(kind_catalog.NOT_APPLICABLE, reason))
    [planned] = runner.plan([row], TARGETS, "abcdef", (), adapt=kind_catalog.adapt)
    assert planned.skip == f"not applicable on this backend: {reason}"
    assert planned.technique is row and planned.index == CATALOG.index(row)


def test_a_row_missing_from_the_kind_catalog_is_an_error(monkeypatch):
    row = dataclasses.replace(catalog.by_id("content-query"), id="content-new-row")
    with pytest.raises(KeyError, match="no kind entry"):
        kind_catalog.adapt(row)


def test_the_kind_only_targets_are_the_ones_kind_rows_name():
    """Beyond what every backend's Targets holds, kind's rows name exactly KIND_TARGETS (the kind world fills them)."""
    named = set().union(*(kind_catalog.adapt(t).needs for t in CATALOG))
    assert named - set(TARGETS.values()) == set(kind_catalog.KIND_TARGETS)
