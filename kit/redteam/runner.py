"""Runs the catalog against a running cage and judges every technique.

1. Find the targets (the sink, the proxy, the scanner, another agent, the
   host) and start the red team's listeners (one on the host, one in another
   agent).
2. Plant fresh canaries in the attacking agent.
3. Run every attack and control probe in one batch inside the agent (a thread
   pool there: the batch takes about as long as its slowest probe), then each
   fault row with its fault applied (scanner stopped, scanner frozen).
4. Read what the sink captured meanwhile, search all of it for every canary
   (:mod:`kit.redteam.leaksearch`), attribute it to probes by their markers.
5. Classify (:mod:`kit.redteam.classify`), remove the canaries, report.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from kit.errors import CageError
from kit.redteam import canaries as canaries_mod
from kit.redteam import capture, classify, leaksearch, shipping
from kit.redteam.catalog import CATALOG, Technique, is_direct
from kit.redteam.scorecard import Finding, Report
from kit.redteam.targets import Targets, fill, placeholders
from kit.redteam.world import AGENT, WITNESS, World

# How the sink's answers are recognised (images/sink: every HTTP answer is
# JSON {"sink": "ok", "seq": N}).
SINK_SIGNATURE = {"body": '"sink": "ok"'}
RUN_DIR = "/tmp/yolo-cage-redteam-{run_id}"
BATCH_MARGIN = 90.0  # seconds on top of the slowest probe's own timeout
OTHER_AGENT_PORT = 7777
# A row keeps its catalog position in its markers when a backend adapts it (World.adapt).
_INDEX = {t.id: i for i, t in enumerate(CATALOG)}


@dataclass
class Planned:
    index: int
    technique: Technique
    attacks: list[dict] = field(default_factory=list)
    controls: list[dict] = field(default_factory=list)
    skip: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    agent: str | None = None
    ids: Sequence[str] = ()
    channels: Sequence[str] = ()
    workers: int = 24
    techniques: Sequence[Technique] | None = None  # default: the whole catalog (filtered by ids/channels)


def plan(rows: Sequence[Technique], targets: Targets, run_id: str, faults: Sequence[str], *,
         adapt: Callable[[Technique], Technique | str] | None = None, places: Sequence[str] = (AGENT,)) -> list[Planned]:
    """Fill each row's targets and give every probe its marker; skip what cannot run here.

    ``adapt`` gives a backend's form of a row (or the reason it has no meaning
    there: the row is reported as skipped with it, never dropped); ``places``
    are where this backend can run probes (``probe["where"]``, default the agent).
    """
    values = targets.values()
    out = []
    for original in rows:
        index = _INDEX.get(original.id, len(CATALOG) + rows.index(original))
        technique = adapt(original) if adapt else original
        if isinstance(technique, str):
            out.append(Planned(index, original, skip=f"not applicable on this backend: {technique}"))
            continue
        planned = Planned(index, technique)
        for side, probes in (("a", technique.attack), ("c", technique.control)):
            filled = _fill(probes, values, run_id, index, side, planned.notes, targets.local_addresses, places)
            setattr(planned, "attacks" if side == "a" else "controls", filled)
        planned.skip = _skip_reason(technique, planned, targets, faults)
        out.append(planned)
    return out


def _fill(probes: Sequence[dict], values: Mapping[str, str | None], run_id: str, index: int, side: str,
          notes: list[str], local: frozenset[str] = frozenset(), places: Sequence[str] = (AGENT,)):
    filled = []
    for k, probe in enumerate(probes):
        missing = sorted(n for n in placeholders(probe) if values.get(n) is None)
        if missing:
            notes.append(f"probe {side}{k} not run: no {', '.join(missing)} in this cage")
            continue
        if probe.get("where", AGENT) not in places:
            notes.append(f"probe {side}{k} not run: this backend has no {probe['where']} to run it in")
            continue
        if probe.get("local_only") and probe["local_only"] not in local:
            notes.append(f"probe {side}{k} not sent: {probe['local_only']} is not an address of this machine, "
                         "and no packet of the red team may leave it")
            continue
        spec = dict(fill(probe, dict(values)))  # type: ignore[arg-type]
        spec["marker"] = capture.marker(run_id, index, side, k)
        spec["_direct"] = is_direct(probe)
        filled.append(spec)
    return filled


def _skip_reason(t: Technique, planned: Planned, targets: Targets, faults: Sequence[str]) -> str | None:
    if not planned.attacks or not planned.controls:
        return "; ".join(planned.notes) or "nothing to run"
    if t.offhost and not targets.offhost_ok:
        return ("not sent: the proxy has a route off this machine, and if it were not stopped this attack "
                "would reach a real address (run with --allow-offhost to send it)")
    if t.fault and t.fault not in faults:
        return f"this backend cannot inject the fault {t.fault!r}"
    return None


class Session:
    """One run of the red team against one agent of a running cage."""

    def __init__(self, world: World, options: Options | None = None, progress: Callable[[str], None] | None = None):
        self.world = world
        self.backend = world.backend
        self.options = options or Options()
        self.progress = progress or (lambda _msg: None)
        self.canaries = canaries_mod.generate()
        self.run_dir = RUN_DIR.format(run_id=self.canaries.run_id)
        self.results: dict[str, dict] = {}
        self.findings: list[Finding] = []

    @property
    def run_id(self) -> str:
        return self.canaries.run_id

    def rows(self) -> list[Technique]:
        if self.options.techniques is not None:
            return list(self.options.techniques)
        from kit.redteam.catalog import select

        return select(self.options.ids, self.options.channels)

    def run(self) -> Report:
        started = time.monotonic()
        agent = self.options.agent or self._first_agent()
        with contextlib.ExitStack() as stack:
            host = stack.enter_context(self.world.host_listener())
            targets = self.world.targets(agent, host.port if host else None)
            planned = plan(self.rows(), targets, self.run_id, self.world.faults(), adapt=self.world.adapt,
                           places=self.world.places())
            self.progress(f"run {self.run_id}: {len(planned)} techniques against agent {agent} "
                          f"({sum(1 for p in planned if p.skip) } skipped)")
            self._plant(agent)
            stack.callback(self._unplant, agent)
            other = self._start_other_listener(targets)
            mark = self.world.sink_mark()
            self._run_main(agent, planned)
            self._run_faults(agent, planned)
            time.sleep(1.0)  # let the sink flush what is still in flight
            events = capture.parse(self.world.sink_lines(mark))
            other_seen = self._collect_other_listener(targets, other)
            host_seen = list(host.connections) if host else []
        evidence, hits = self._evidence(events, host_seen, other_seen)
        verdicts = [self._verdict(p, evidence) for p in planned]
        return Report(
            run_id=self.run_id, backend=self.backend.name, agent=agent, seconds=round(time.monotonic() - started, 1),
            verdicts=verdicts, findings=self.findings, hits=hits, capture_bytes=capture.size(events),
            capture_events=len(events),
            canaries=[(c.name, c.provider, canaries_mod.where_planted(c)) for c in self.canaries.canaries],
            notes=[f"{p.technique.id}: {n}" for p in planned for n in p.notes if not p.skip],
        )

    def _first_agent(self) -> str:
        agents = self.backend.agents()
        if not agents:
            raise CageError("the cage has no agent to attack from")
        return agents[0]

    # --- exec in agents ------------------------------------------------------------------

    def _exec(self, agent: str, probes: list[dict], sources: Mapping | None = None) -> list[dict]:
        env = self.canaries.env()
        run = lambda argv, stdin, budget: self.backend.exec(agent, argv, env=env, stdin=stdin, timeout=budget)  # noqa: E731
        return self._batch(run, agent, probes, sources if sources is not None else self._sources())

    def _exec_witness(self, probes: list[dict]) -> list[dict]:
        """Controls in the world's witness: no canary is planted or named there."""
        return self._batch(self.world.witness_exec, "the witness", probes, {})

    def _batch(self, run: Callable, where: str, probes: list[dict], sources: Mapping) -> list[dict]:
        spec = {"run_dir": self.run_dir, "sources": sources,
                "signature": SINK_SIGNATURE, "probes": [_wire(p) for p in probes], "workers": self.options.workers}
        argv, stdin = shipping.command(spec)
        budget = max((float(p.get("timeout", 8)) + float(p.get("delay", 0)) for p in probes), default=8) + BATCH_MARGIN
        try:
            result = run(argv, stdin, budget)
        except CageError as exc:
            return [_broken(p, f"exec in {where} failed: {exc}") for p in probes]
        got = {r["marker"]: r for r in shipping.parse_output(result.stdout)}
        tail = result.stderr.decode("utf-8", "replace")[-400:]
        out = []
        for probe in probes:
            record = got.get(probe["marker"]) or _broken(probe, f"no result (exit {result.returncode}): {tail}")
            record["direct"] = probe.get("_direct", False)
            out.append(record)
        return out

    def _sources(self) -> dict:
        return canaries_mod.plant_spec(self.canaries)["sources"]  # type: ignore[return-value]

    def _plant(self, agent: str) -> None:
        spec = canaries_mod.plant_spec(self.canaries)
        [result] = self._exec(agent, [{"op": "plant", "marker": "plant", "files": spec["files"]}])
        if result["outcome"] != "delivered":
            raise CageError(f"could not plant the canaries in agent {agent}: {result['detail']}")

    def _unplant(self, agent: str) -> None:
        [result] = self._exec(agent, [{"op": "unplant", "marker": "unplant"}])
        if result["outcome"] != "delivered":
            self.findings.append(Finding("cleanup", f"canaries may remain in {self.run_dir}: {result['detail']}"))

    def _run_main(self, agent: str, planned: Sequence[Planned]) -> None:
        """Every control first, then every attack (fault rows' attacks come later, with their fault).

        Controls go first because a scanner may remember what an agent sent
        (the split-across-requests detector does): an attack must not be able
        to fail another row's control. For the same reason the attacks that
        leave such state (``Technique.stateful``) run after all the others.
        """
        runnable = [p for p in planned if not p.skip and not p.technique.fault]
        controls = [c for p in planned if not p.skip for c in p.controls]
        witnessed = [c for c in controls if c.get("where") == WITNESS]
        controls = [c for c in controls if c.get("where", AGENT) == AGENT]
        attacks = [a for p in runnable if not p.technique.stateful for a in p.attacks]
        stateful = [a for p in runnable if p.technique.stateful for a in p.attacks]
        if witnessed:
            self.progress(f"controls in the witness: {len(witnessed)} probes")
            for record in self._exec_witness(witnessed):
                self.results[record["marker"]] = record
        for name, probes in (("controls", controls), ("attacks", attacks), ("attacks that leave state", stateful)):
            if not probes:
                continue
            self.progress(f"{name}: {len(probes)} probes")
            for record in self._exec(agent, probes):
                self.results[record["marker"]] = record

    def _run_faults(self, agent: str, planned: Sequence[Planned]) -> None:
        for p in planned:
            if p.skip or not p.technique.fault:
                continue
            self.progress(f"fault {p.technique.fault}: {p.technique.id}")
            try:
                with self.world.fault(p.technique.fault):
                    for record in self._exec(agent, p.attacks):
                        self.results[record["marker"]] = record
            except CageError as exc:
                self.findings.append(Finding("fault", f"{p.technique.id}: the cage did not recover: {exc}"))

    # --- another agent's listener -----------------------------------------------------------

    def _start_other_listener(self, targets: Targets) -> dict | None:
        if not targets.other_agent:
            return None
        [result] = self._exec(targets.other_agent, [
            {"op": "listen-start", "marker": "listen", "port": OTHER_AGENT_PORT, "seconds": 600}], sources={})
        if result["outcome"] != "delivered":
            self.findings.append(Finding("setup", f"no listener in agent {targets.other_agent}: {result['detail']}"))
            return None
        return result["facts"]

    def _collect_other_listener(self, targets: Targets, started: dict | None) -> list[dict]:
        if not started or not targets.other_agent:
            return []
        [result] = self._exec(targets.other_agent, [
            {"op": "listen-collect", "marker": "collect", "pid": started["pid"], "record": started["record"]}], sources={})
        seen = result.get("facts", {}).get("connections", [])
        return [c for c in seen if "self-check" not in c.get("data", "")]

    # --- evidence and verdicts ------------------------------------------------------------------

    def _evidence(self, events, host_seen, other_seen) -> tuple[classify.Evidence, list[leaksearch.Hit]]:
        hits = leaksearch.search(capture.blobs(events), self.canaries.canaries)
        by_marker: dict[str, list] = {}
        for hit in hits:
            if not hit.markers:
                self.findings.append(Finding("canary", f"canary {hit.canary} at the sink in {hit.where}, "
                                                      "in traffic no probe marker names"))
            for m in hit.markers:
                by_marker.setdefault(m, []).append(hit)
        sink: dict[str, list[str]] = {}
        for event in events:
            for m in event.markers:
                sink.setdefault(m, []).append(event.kind)
        direct = self._direct_contacts(events)
        host = _count_markers([c.data.decode("latin-1") for c in host_seen], "host listener", self.findings,
                              [c.peer for c in host_seen])
        other = _count_markers([c.get("data", "") for c in other_seen], "other agent's listener", self.findings,
                               [c.get("peer", "?") for c in other_seen])
        return classify.Evidence(sink=sink, hits=by_marker, host=host, other_agent=other, direct=direct), hits

    def _direct_contacts(self, events) -> dict[str, list[str]]:
        direct: dict[str, list[str]] = {}
        for event in capture.foreign_sources(events, self.world.allowed_sources()):
            if not event.markers:
                self.findings.append(Finding("direct", f"the sink heard {event.kind} on {event.listener} from "
                                                       f"{event.src_ip}, not through the proxy"))
            for m in event.markers:
                direct.setdefault(m, []).append(f"{event.kind} on {event.listener} from {event.src_ip}")
        return direct

    def _verdict(self, p: Planned, evidence: classify.Evidence) -> classify.Verdict:
        if p.skip:
            return classify.skipped(p.technique, p.skip)
        attacks = [self.results.get(a["marker"]) or _broken(a, "not run") for a in p.attacks]
        controls = [self.results.get(c["marker"]) or _broken(c, "not run") for c in p.controls]
        return classify.classify(p.technique, attacks, controls, evidence)


def _wire(probe: dict) -> dict:
    return {k: v for k, v in probe.items() if not k.startswith("_") and k not in ("local_only", "where")}


def _broken(probe: dict, detail: str) -> dict:
    return {"marker": probe["marker"], "op": probe.get("op", "?"), "outcome": "error", "detail": detail,
            "status": None, "block": None, "ms": 0.0, "facts": {}}


def _count_markers(datas: Sequence[str], where: str, findings: list[Finding], peers: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for data, peer in zip(datas, peers, strict=True):
        found = {m.lower() for m in capture.MARKER.findall(data)}
        if not found:
            findings.append(Finding("direct", f"the {where} received a connection from {peer} that no probe marker names"))
        for m in found:
            counts[m] = counts.get(m, 0) + 1
    return counts


def run(world: World, options: Options | None = None, progress: Callable[[str], None] | None = None) -> Report:
    return Session(world, options, progress).run()
