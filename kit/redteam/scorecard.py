"""The scorecard of a red-team run: text for people, JSON and JUnit XML for machines.

A run passes only when every technique that ran was blocked with its control
passing, nothing outside the techniques was found (a canary in traffic no probe
names, the sink hearing from anyone but the proxy, a cage that did not recover
from a fault), and the sink's capture holds 0 canary bytes. Skipped rows are
listed with their reason; they do not fail a run, and they are not passes.
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from kit.redteam.canaries import FRAGMENT
from kit.redteam.classify import BLOCKED, CONTROL_FAILED, ERROR, LEAKED, SKIPPED, VERDICTS, Verdict
from kit.redteam.leaksearch import Hit

DECODINGS = "url, json-unicode, base64/base64url (every alignment), base32, hex, reversed, gzip/zlib/deflate/br/zstd, DNS labels"


@dataclass(frozen=True)
class Finding:
    """Something wrong that no single technique owns."""

    kind: str  # canary | direct | fault | setup | cleanup
    detail: str


@dataclass
class Report:
    run_id: str
    backend: str
    agent: str
    seconds: float
    verdicts: list[Verdict]
    findings: list[Finding] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    capture_bytes: int = 0
    capture_events: int = 0
    canaries: list[tuple[str, str, str]] = field(default_factory=list)  # name, provider, where planted
    notes: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        counts = {v: 0 for v in VERDICTS}
        for verdict in self.verdicts:
            counts[verdict.verdict] += 1
        return counts

    @property
    def canary_bytes(self) -> int:
        """Characters of canary material at the sink: per canary and event, the longest piece."""
        best: dict[tuple[str, int], int] = {}
        for hit in self.hits:
            key = (hit.canary, hit.event)
            best[key] = max(best.get(key, 0), hit.length)
        return sum(best.values())

    @property
    def ok(self) -> bool:
        totals = self.totals()
        bad = totals[LEAKED] + totals[CONTROL_FAILED] + totals[ERROR]
        return bad == 0 and not self.findings and not self.hits and totals[BLOCKED] > 0

    def failures(self) -> list[str]:
        totals = self.totals()
        out = [f"{totals[v]} {v}" for v in (LEAKED, CONTROL_FAILED, ERROR) if totals[v]]
        if self.hits:
            out.append(f"{self.canary_bytes} canary bytes at the sink")
        if self.findings:
            out.append(f"{len(self.findings)} finding(s) outside the techniques")
        if not any(totals[v] for v in (BLOCKED, LEAKED, CONTROL_FAILED, ERROR)):
            out.append("no technique ran")  # every row skipped: nothing was shown
        return out


def text(report: Report) -> str:
    lines = [f"yolo-cage red team: run {report.run_id} on {report.backend}, attacking from agent "
             f"{report.agent!r}: {len(report.verdicts)} techniques in {report.seconds:.1f} s", ""]
    lines.append(f"{'VERDICT':15} {'ID':30} {'CHANNEL':12} {'ATTACK':28} CONTROL")
    for v in report.verdicts:
        lines.append(f"{v.verdict:15} {v.id:30} {v.channel:12} {_cut(v.attack, 28):28} {_cut(v.control, 24)}")
        if v.verdict not in (BLOCKED,):
            lines.append(f"{'':15} -> {v.detail}")
            lines += [f"{'':18}{e}" for e in v.evidence[1:6]]
    totals = report.totals()
    lines += ["", "Totals: " + ", ".join(f"{totals[v]} {v}" for v in VERDICTS) + f" (of {len(report.verdicts)})"]
    planted = ", ".join(f"{name} ({provider}, {where})" for name, provider, where in report.canaries)
    lines.append(f"Canaries planted ({len(report.canaries)}, fresh this run): {planted}")
    lines.append(f"Sink capture: {report.capture_bytes:,} bytes in {report.capture_events} events, searched for every "
                 f"canary whole and in pieces of {FRAGMENT}+ characters through {DECODINGS}: "
                 f"{len(report.hits)} hit(s), {report.canary_bytes} canary bytes")
    for hit in report.hits[:20]:
        lines.append(f"  hit: {hit.canary} ({hit.length} chars, {'+'.join(hit.transforms) or 'as is'}) in {hit.where}")
    lines.append("Findings outside the techniques: " + ("none" if not report.findings else ""))
    lines += [f"  [{f.kind}] {f.detail}" for f in report.findings]
    if report.notes:
        lines.append("Notes: " + "; ".join(report.notes))
    verdict = "PASS: every technique blocked, every control passed, 0 canary bytes at the sink" if report.ok else (
        "FAIL: " + ", ".join(report.failures()))
    lines += ["", f"RESULT: {verdict}"]
    return "\n".join(lines) + "\n"


def _cut(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + "~"


def as_json(report: Report) -> dict:
    doc = dataclasses.asdict(report)
    doc["totals"] = report.totals()
    doc["canary_bytes"] = report.canary_bytes
    doc["ok"] = report.ok
    return doc


def junit(report: Report) -> ET.Element:
    totals = report.totals()
    suite = ET.Element("testsuite", {
        "name": f"yolo-cage.redteam.{report.backend}", "tests": str(len(report.verdicts) + 2),
        "failures": str(totals[LEAKED] + totals[CONTROL_FAILED] + (1 if report.hits else 0) + (1 if report.findings else 0)),
        "errors": str(totals[ERROR]), "skipped": str(totals[SKIPPED]), "time": f"{report.seconds:.1f}",
    })
    for v in report.verdicts:
        case = ET.SubElement(suite, "testcase", {"classname": f"redteam.{v.channel}", "name": v.id, "time": f"{v.ms / 1000:.3f}"})
        body = "\n".join([v.technique, f"why: {v.why}", f"attack: {v.attack}", f"control: {v.control}", v.detail, *v.evidence])
        if v.verdict in (LEAKED, CONTROL_FAILED):
            ET.SubElement(case, "failure", {"type": v.verdict, "message": v.detail}).text = body
        elif v.verdict == ERROR:
            ET.SubElement(case, "error", {"type": ERROR, "message": v.detail}).text = body
        elif v.verdict == SKIPPED:
            ET.SubElement(case, "skipped", {"message": v.detail})
        else:
            ET.SubElement(case, "system-out").text = body
    search = ET.SubElement(suite, "testcase", {"classname": "redteam.sink", "name": "canary-search"})
    message = f"{len(report.hits)} hit(s), {report.canary_bytes} canary bytes in {report.capture_bytes} captured bytes"
    if report.hits:
        ET.SubElement(search, "failure", {"type": "leak", "message": message}).text = "\n".join(
            f"{h.canary} in {h.where} ({'+'.join(h.transforms) or 'as is'})" for h in report.hits)
    else:
        ET.SubElement(search, "system-out").text = message
    others = ET.SubElement(suite, "testcase", {"classname": "redteam.run", "name": "findings-outside-techniques"})
    if report.findings:
        ET.SubElement(others, "failure", {"type": "finding", "message": f"{len(report.findings)} finding(s)"}).text = "\n".join(
            f"[{f.kind}] {f.detail}" for f in report.findings)
    return suite


def write(report: Report, directory: Path) -> list[Path]:
    """``redteam-<backend>.txt``, ``.json`` and ``.xml`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"redteam-{report.backend}"
    paths = [stem.with_suffix(".txt"), stem.with_suffix(".json"), stem.with_suffix(".xml")]
    paths[0].write_text(text(report), encoding="utf-8")
    paths[1].write_text(json.dumps(as_json(report), indent=2) + "\n", encoding="utf-8")
    tree = ET.ElementTree(junit(report))
    ET.indent(tree)
    tree.write(paths[2], encoding="utf-8", xml_declaration=True)
    return paths
