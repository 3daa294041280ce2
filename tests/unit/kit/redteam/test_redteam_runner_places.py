"""The runner's backend hooks: rows a world adapts keep their markers, probes go where they may run
(the agent, or a world's witness), and a probe that cannot run anywhere here is noted, never passed."""

from __future__ import annotations

import contextlib
import dataclasses
import json

from kit.backend import ExecResult
from kit.redteam import catalog, runner, shipping
from kit.redteam.world import AGENT, WITNESS, World
from tests.unit.kit.redteam.test_redteam_runner import TARGETS

ROW = catalog.by_id("net-udp-sink-ip")
WITNESSED = dataclasses.replace(ROW, control=({**catalog.dns("clean.{{m}}.${domain}", server="${sink_ip}"),
                                               "where": WITNESS},))


def test_an_adapted_row_keeps_its_catalog_index_in_its_markers():
    [p] = runner.plan([ROW], TARGETS, "abcdef", (), adapt=lambda t: WITNESSED, places=(AGENT, WITNESS))
    index = catalog.CATALOG.index(ROW)
    assert p.index == index and p.technique is WITNESSED
    assert p.controls[0]["marker"] == f"rt-abcdef-{index:03d}c0" and p.controls[0]["where"] == WITNESS
    assert "where" not in runner._wire(p.controls[0])


def test_a_witness_probe_without_a_witness_is_noted_and_the_row_skipped():
    [p] = runner.plan([WITNESSED], TARGETS, "abcdef", ())
    assert p.skip == "probe c0 not run: this backend has no witness to run it in"


class _World(World):
    """Only what the runner's batching needs."""

    def __init__(self):
        self.witness_batches: list[list[str]] = []

    def targets(self, agent, host_port):
        return TARGETS

    def sink_mark(self):
        return 0

    def sink_lines(self, since):
        return []

    def allowed_sources(self):
        return set()

    def places(self):
        return (AGENT, WITNESS)

    def witness_exec(self, argv, stdin, timeout):
        doc = json.loads(stdin)
        self.witness_batches.append([p["marker"] for p in doc["spec"]["probes"]])
        assert doc["spec"]["sources"] == {} and argv == shipping.command({})[0]  # nothing of the canaries there
        out = "".join(json.dumps({"marker": p["marker"], "op": p["op"], "outcome": "delivered",
                                                "detail": "", "status": None, "block": None, "ms": 1.0, "facts": {}})
                      + "\n" for p in doc["spec"]["probes"])
        return ExecResult(0, out.encode(), b"")


def test_witness_controls_run_in_the_witness_first_and_agent_probes_in_the_agent():
    world = _World()
    plans = runner.plan([WITNESSED, catalog.by_id("content-query")], TARGETS, "abcdef", (), places=world.places())
    session = runner.Session.__new__(runner.Session)
    session.world, session.results, session.progress = world, {}, lambda _m: None
    session.options, session.run_dir = runner.Options(), "/tmp/x"
    agent_batches = []
    session._exec = lambda agent, probes: agent_batches.append([p["marker"] for p in probes]) or []
    session._run_main("dev", plans)
    assert world.witness_batches == [[plans[0].controls[0]["marker"]]]
    assert [{m[-2] for m in b} for b in agent_batches] == [{"c"}, {"a"}]
    assert plans[0].controls[0]["marker"] not in sum(agent_batches, [])
    assert session.results[plans[0].controls[0]["marker"]]["outcome"] == "delivered"


def test_the_default_world_has_no_witness_and_a_host_listener_only_when_it_says_so():
    world = _World()
    assert World.places(world) == (AGENT,)
    with world.host_listener() as host:
        assert host is None
    world.host_listener_ok = lambda: True
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(world.host_listener())
        assert host.port > 0 and host.connections == []
