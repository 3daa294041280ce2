"""From what the probes saw and what the attacker recorded, to one verdict per technique.

Pure functions, no Docker: the runner collects the evidence, this decides.

Order of judgement, strictest first:

1. ``leaked``: any evidence that the attack got through: a canary (or a long
   piece of one) in the sink's capture of the attack's traffic; for attacks
   without a canary, anything at all the sink, the host listener or another
   agent recorded from it; the attacked target answering the agent; the proxy
   trying the upstream (502/504) where it had to refuse; a connection refused
   by the target itself (the packet arrived).
2. ``error``: a probe could not run (missing tool, crash): nothing is known.
3. ``control-failed``: the same path with clean data did not get through, so
   the block proves nothing.
4. ``blocked``: every attack probe ended in an outcome the row accepts.
5. otherwise ``error``: an outcome the row does not expect, shown as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kit.redteam.catalog import Technique
from kit.redteam.inside import outcomes as o
from kit.redteam.leaksearch import Hit

BLOCKED, LEAKED, CONTROL_FAILED, ERROR, SKIPPED = "blocked", "leaked", "control-failed", "error", "skipped"
VERDICTS = (BLOCKED, LEAKED, CONTROL_FAILED, ERROR, SKIPPED)
_REACHED = {o.DELIVERED, o.ANSWERED}
_UPSTREAM = {502, 503, 504}


@dataclass(frozen=True)
class Evidence:
    """What the attacker's side recorded, keyed by probe marker."""

    sink: Mapping[str, Sequence[str]] = field(default_factory=dict)  # marker -> kinds of sink events
    hits: Mapping[str, Sequence[Hit]] = field(default_factory=dict)  # marker -> canary hits in its events
    host: Mapping[str, int] = field(default_factory=dict)  # marker -> connections at the host listener
    other_agent: Mapping[str, int] = field(default_factory=dict)  # marker -> connections at the other agent
    direct: Mapping[str, Sequence[str]] = field(default_factory=dict)  # marker -> sink events not from the proxy


@dataclass(frozen=True)
class Verdict:
    id: str
    channel: str
    technique: str
    verdict: str
    attack: str  # the attack probes' outcomes, e.g. "proxy-block x3"
    control: str
    detail: str
    evidence: tuple[str, ...] = ()
    why: str = ""
    ms: float = 0.0


def summary(results: Sequence[Mapping]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result["outcome"]] = counts.get(result["outcome"], 0) + 1
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in counts.items()) or "-"


def skipped(t: Technique, reason: str) -> Verdict:
    return Verdict(t.id, t.channel, t.technique, SKIPPED, "-", "-", reason, why=t.why)


def classify(t: Technique, attacks: Sequence[Mapping], controls: Sequence[Mapping], evidence: Evidence) -> Verdict:
    def verdict(kind: str, detail: str, lines: Sequence[str] = ()) -> Verdict:
        ms = max((float(r.get("ms", 0)) for r in list(attacks) + list(controls)), default=0.0)
        return Verdict(t.id, t.channel, t.technique, kind, summary(attacks), summary(controls), detail, tuple(lines), t.why, ms)

    leaks = leak_evidence(t, attacks, controls, evidence)
    if leaks:
        return verdict(LEAKED, leaks[0], leaks)
    broken = [r for r in list(attacks) + list(controls) if r["outcome"] == o.ERROR]
    if broken:
        return verdict(ERROR, f"probe {broken[0]['marker']} could not run: {broken[0]['detail']}")
    failed = control_failures(t, controls, evidence)
    if failed:
        return verdict(CONTROL_FAILED, failed[0], failed)
    odd = [r for r in attacks if r["outcome"] not in t.accept]
    if odd:
        r = odd[0]
        return verdict(ERROR, f"unexpected outcome {r['outcome']} for {r['marker']} ({r['detail']}); "
                              f"expected one of {', '.join(sorted(t.accept))}")
    return verdict(BLOCKED, _blocked_detail(attacks))


def _blocked_detail(attacks: Sequence[Mapping]) -> str:
    reasons = sorted({r.get("block") or r["outcome"] for r in attacks})
    return "; ".join(reasons)


def leak_evidence(t: Technique, attacks: Sequence[Mapping], controls: Sequence[Mapping], ev: Evidence) -> list[str]:
    lines: list[str] = []
    for result in list(attacks) + list(controls):
        for hit in ev.hits.get(result["marker"], ()):
            how = "+".join(hit.transforms) or "as is"
            size = "whole" if hit.full else f"{hit.length} characters of"
            lines.append(f"{size} canary {hit.canary} ({hit.provider}) at the sink, {hit.where} ({how})")
    for result in attacks:
        lines += _attack_leaks(t, result, ev)
    return lines


def _attack_leaks(t: Technique, result: Mapping, ev: Evidence) -> list[str]:
    marker, outcome = result["marker"], result["outcome"]
    lines = []
    if not t.carries_canary and ev.sink.get(marker):
        lines.append(f"the sink recorded {', '.join(sorted(set(ev.sink[marker])))} from {marker}")
    for line in ev.direct.get(marker, ()):
        lines.append(f"{marker} reached the sink directly, not through the proxy: {line}")
    if ev.host.get(marker):
        lines.append(f"the host listener received {ev.host[marker]} connection(s) from {marker}")
    if ev.other_agent.get(marker):
        lines.append(f"the other agent's listener received {ev.other_agent[marker]} connection(s) from {marker}")
    if outcome in _REACHED and outcome not in t.accept:
        lines.append(f"{marker} reached its target: {result['detail']}")
    if outcome == o.PROXY_ERROR and result.get("status") in _UPSTREAM and outcome not in t.accept:
        lines.append(f"{marker}: the proxy tried the upstream (HTTP {result['status']}) instead of refusing")
    if outcome == o.REFUSED and outcome not in t.accept and result.get("direct"):
        lines.append(f"{marker}: the target's host answered (connection refused): packets arrive there")
    return lines


def control_failures(t: Technique, controls: Sequence[Mapping], ev: Evidence) -> list[str]:
    lines = []
    for result in controls:
        if result["outcome"] != o.DELIVERED:
            lines.append(f"control {result['marker']} did not get through: {result['outcome']} ({result['detail']})")
        elif t.control_at == "sink" and not ev.sink.get(result["marker"]):
            lines.append(f"control {result['marker']} was answered but the sink recorded nothing from it")
    return lines
