"""Planning a run: targets filled, markers given, rows that cannot run here skipped with the reason."""

from __future__ import annotations

from kit.redteam import catalog, runner
from kit.redteam.targets import Targets, ip_forms

TARGETS = Targets(agent="dev", proxy_host="proxy", proxy_ip="10.0.0.2", proxy_port=8080, sink_ip="172.20.0.5",
                  sink_name="yc-sink-1", scanner_ip="10.1.0.3", gateway_ip="10.0.0.1", host_ips=("172.17.0.1",),
                  host_port=4321)


def planned(*ids: str, targets: Targets = TARGETS, faults=("scanner-stopped", "scanner-slow")):
    return {p.technique.id: p for p in runner.plan([catalog.by_id(i) for i in ids], targets, "abcdef", faults)}


def test_targets_filled_and_markers_given():
    p = planned("net-tcp-sink-ip-80")["net-tcp-sink-ip-80"]
    [attack], [control] = p.attacks, p.controls
    index = catalog.CATALOG.index(catalog.by_id("net-tcp-sink-ip-80"))
    assert attack["host"] == "172.20.0.5" and attack["marker"] == f"rt-abcdef-{index:03d}a0" and attack["_direct"]
    assert control["host"] == "10.0.0.2" and control["port"] == "8080" and control["marker"].endswith("c0")
    assert "{{c:env-aws-secret}}" in attack["payload"]  # the secret is named, resolved only inside the agent
    assert p.skip is None


def test_ip_forms_of_the_sink():
    forms = ip_forms("ip", "172.20.0.5")
    assert forms["ip_int"] == str(172 * 2**24 + 20 * 2**16 + 5)
    assert forms["ip_hex"] == "0xac140005" and forms["ip_octal"] == "0254.024.00.05" and forms["ip_short"] == "172.20.5"
    assert forms["ip_v4mapped"] == "::ffff:172.20.0.5" and forms["ip_nat64"] == "64:ff9b::172.20.0.5"


def test_missing_target_skips_with_the_reason():
    p = planned("net-other-agent")["net-other-agent"]
    assert p.skip == "probe a0 not run: no other_agent_ip in this cage"


def test_a_probe_missing_its_target_is_dropped_and_noted_but_the_row_runs():
    p = planned("net-host-addresses")["net-host-addresses"]  # host_ip2 is missing
    assert p.skip is None and len(p.attacks) == 1 and p.notes == ["probe a1 not run: no host_ip2 in this cage"]


def test_offhost_rows_wait_for_a_safe_proxy():
    assert "route off this machine" in planned("dest-metadata")["dest-metadata"].skip
    safe = Targets(**{**vars(TARGETS), "offhost_ok": True})
    assert planned("dest-metadata", targets=safe)["dest-metadata"].skip is None


def test_faults_the_backend_cannot_inject_are_skipped():
    p = planned("fault-scanner-slow", faults=())["fault-scanner-slow"]
    assert p.skip == "this backend cannot inject the fault 'scanner-slow'"


def test_wire_form_drops_private_keys():
    assert runner._wire({"op": "tcp", "_direct": True, "marker": "m"}) == {"op": "tcp", "marker": "m"}


def test_controls_then_attacks_then_attacks_that_leave_state():
    """A scanner that remembers an agent's requests must not let one row decide another's control or attack."""
    rows = [catalog.by_id(i) for i in ("enc-split-requests", "content-query", "fault-scanner-slow")]
    plans = runner.plan(rows, TARGETS, "abcdef", ("scanner-slow",))
    session = runner.Session.__new__(runner.Session)
    session.results, session.progress, batches = {}, lambda _m: None, []
    session._exec = lambda agent, probes: batches.append([p["marker"] for p in probes]) or []
    session._run_main("dev", plans)
    kinds = [{m[-2] for m in batch} for batch in batches]
    assert kinds == [{"c"}, {"a"}, {"a"}]
    assert set(batches[1]) == {a["marker"] for a in plans[1].attacks}  # content-query
    assert set(batches[2]) == {a["marker"] for a in plans[0].attacks}  # the split-request row, last
    assert not any(a["marker"] in sum(batches, []) for a in plans[2].attacks)  # fault attacks wait for their fault
