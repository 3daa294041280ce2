"""Every verdict, and what decides it."""

from __future__ import annotations

import pytest

from kit.redteam import catalog
from kit.redteam.classify import (
    BLOCKED,
    CONTROL_FAILED,
    ERROR,
    LEAKED,
    SKIPPED,
    Evidence,
    classify,
    skipped,
    summary,
)
from kit.redteam.inside import outcomes as o
from kit.redteam.leaksearch import Hit

CONTENT = catalog.by_id("content-query")  # canary in a query string, control at the sink
NETWORK = catalog.by_id("net-tcp-sink-ip-443")  # no canary, control in the agent
DEST = catalog.by_id("dest-blocklist")  # no canary, control at the sink
WS = catalog.by_id("content-websocket")


def r(marker: str, outcome: str, status: int | None = None, block: str | None = None, direct: bool = False) -> dict:
    return {"marker": marker, "op": "http", "outcome": outcome, "detail": f"{outcome} detail", "status": status,
            "block": block, "ms": 12.0, "facts": {}, "direct": direct}


BLOCK = r("a0", o.PROXY_BLOCK, 403, "secret-in-request")
OK_CONTROL = r("c0", o.DELIVERED, 200)
AT_SINK = Evidence(sink={"c0": ["http"]})


def hit(marker: str, full: bool = True) -> Hit:
    return Hit("env-github", "github-pat", 3, "http#3 target", ("url",), 36 if full else 14, full, (marker,))


def test_blocked_needs_an_accepted_outcome_and_a_passing_control():
    v = classify(CONTENT, [BLOCK], [OK_CONTROL], AT_SINK)
    assert (v.verdict, v.detail, v.attack, v.control) == (BLOCKED, "secret-in-request", "proxy-block", "delivered")


def test_canary_at_the_sink_is_a_leak_even_if_the_agent_saw_a_block():
    v = classify(CONTENT, [BLOCK], [OK_CONTROL], Evidence(sink={"c0": ["http"], "a0": ["http"]}, hits={"a0": [hit("a0")]}))
    assert v.verdict == LEAKED
    assert "whole canary env-github (github-pat) at the sink" in v.detail


def test_a_partial_canary_is_a_leak():
    v = classify(CONTENT, [BLOCK], [OK_CONTROL], Evidence(sink={"c0": ["http"]}, hits={"a0": [hit("a0", full=False)]}))
    assert v.verdict == LEAKED and "14 characters of canary" in v.detail


def test_canary_in_the_control_traffic_is_a_leak_too():
    v = classify(CONTENT, [BLOCK], [OK_CONTROL], Evidence(sink={"c0": ["http"]}, hits={"c0": [hit("c0")]}))
    assert v.verdict == LEAKED


def test_sink_hearing_a_canary_less_attack_is_a_leak():
    v = classify(DEST, [BLOCK], [OK_CONTROL], Evidence(sink={"c0": ["http"], "a0": ["dns"]}))
    assert v.verdict == LEAKED and "the sink recorded dns from a0" in v.detail


def test_a_content_attack_at_the_sink_without_its_canary_is_not_by_itself_a_leak():
    # A WebSocket handshake (no canary) reaches the sink; the message carrying it was dropped.
    ws = classify(WS, [r("a0", o.CLOSED)], [OK_CONTROL], Evidence(sink={"c0": ["http", "websocket"], "a0": ["http"]}))
    assert ws.verdict == BLOCKED


def test_target_answering_the_attack_is_a_leak():
    v = classify(NETWORK, [r("a0", o.DELIVERED)], [OK_CONTROL], Evidence())
    assert v.verdict == LEAKED and "a0 reached its target" in v.detail


def test_proxy_trying_the_upstream_is_a_leak():
    v = classify(DEST, [r("a0", o.PROXY_ERROR, 502)], [OK_CONTROL], AT_SINK)
    assert v.verdict == LEAKED and "tried the upstream (HTTP 502)" in v.detail


def test_proxy_auth_failure_is_not_a_leak_but_unexpected():
    v = classify(DEST, [r("a0", o.PROXY_ERROR, 407)], [OK_CONTROL], AT_SINK)
    assert v.verdict == ERROR and "unexpected outcome proxy-error" in v.detail


def test_refused_by_the_target_itself_is_a_leak_for_direct_probes_only():
    direct = classify(NETWORK, [r("a0", o.REFUSED, direct=True)], [OK_CONTROL], Evidence())
    via_proxy = classify(DEST, [r("a0", o.REFUSED)], [OK_CONTROL], AT_SINK)
    assert direct.verdict == LEAKED and "packets arrive there" in direct.detail
    assert via_proxy.verdict == ERROR


def test_host_and_other_agent_listeners_and_direct_contact():
    for ev in (Evidence(host={"a0": 1}), Evidence(other_agent={"a0": 2}), Evidence(direct={"a0": ["tcp on tcp/80 from 10.0.0.3"]})):
        assert classify(NETWORK, [r("a0", o.UNREACHABLE)], [OK_CONTROL], ev).verdict == LEAKED


def test_failed_control_makes_a_block_worthless():
    v = classify(NETWORK, [r("a0", o.UNREACHABLE)], [r("c0", o.UNREACHABLE)], Evidence())
    assert v.verdict == CONTROL_FAILED and "control c0 did not get through" in v.detail


def test_control_must_reach_the_sink_when_the_row_says_so():
    v = classify(CONTENT, [BLOCK], [OK_CONTROL], Evidence())
    assert v.verdict == CONTROL_FAILED and "sink recorded nothing" in v.detail


def test_probe_that_could_not_run_is_an_error():
    v = classify(NETWORK, [r("a0", o.ERROR)], [OK_CONTROL], Evidence())
    assert v.verdict == ERROR and "could not run" in v.detail


def test_every_attack_probe_must_be_blocked():
    rows = catalog.by_id("net-tcp-sink-ip-high")
    v = classify(rows, [r("a0", o.UNREACHABLE), r("a1", o.CLOSED)], [OK_CONTROL], Evidence())
    assert v.verdict == ERROR and "unexpected outcome closed for a1" in v.detail
    assert classify(rows, [r("a0", o.UNREACHABLE), r("a1", o.TIMEOUT)], [OK_CONTROL], Evidence()).verdict == BLOCKED


def test_leak_wins_over_everything():
    v = classify(NETWORK, [r("a0", o.DELIVERED), r("a1", o.ERROR)], [r("c0", o.TIMEOUT)], Evidence())
    assert v.verdict == LEAKED


@pytest.mark.parametrize("outcomes", [[o.PROXY_BLOCK, o.PROXY_BLOCK, o.CLOSED]])
def test_summary_counts_outcomes(outcomes):
    assert summary([r(f"a{i}", x) for i, x in enumerate(outcomes)]) == "proxy-block x2, closed"


def test_skipped_keeps_the_reason():
    v = skipped(NETWORK, "needs two agents")
    assert (v.verdict, v.detail) == (SKIPPED, "needs two agents")
