"""Reading the proxy's audit log (JSON lines written by addon/audit.py) for people."""

from __future__ import annotations

import json
from collections.abc import Iterable


def parse(lines: Iterable[str]) -> list[dict]:
    """Records in order; a line that is not a JSON object becomes a record saying so."""
    out = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        out.append(record if isinstance(record, dict) else {"decision": "?", "reason": f"unreadable line {number}"})
    return out


def select(records: list[dict], *, decision: str | None = None, agent: str | None = None, tail: int = 0) -> list[dict]:
    chosen = [r for r in records if (decision is None or r.get("decision") == decision)]
    chosen = [r for r in chosen if (agent is None or r.get("agent") == agent)]
    return chosen[-tail:] if tail else chosen


def line_for(record: dict) -> str:
    where = f"{record.get('scheme') or ''}{'://' if record.get('scheme') else ''}{record.get('host') or ''}"
    if record.get("port"):
        where += f":{record['port']}"
    where += record.get("path") or ""
    why = record.get("rule") or record.get("reason") or ""
    findings = ", ".join(f"{f.get('rule')}@{f.get('location')}" for f in record.get("findings") or [])
    parts = [
        str(record.get("time", "")),
        f"{record.get('decision', '?'):6}",
        f"{record.get('agent') or '-':12}",
        f"{record.get('method') or record.get('kind') or '':7}",
        where,
        f"[{why}]" if why else "",
        f"findings: {findings}" if findings else "",
    ]
    return " ".join(p for p in parts if p)


def show(lines: list[str], *, tail: int = 50, decision: str | None = None, agent: str | None = None, raw: bool = False) -> None:
    records = select(parse(lines), decision=decision, agent=agent, tail=tail)
    if not records:
        print("(no matching decisions in the audit log)")
    for record in records:
        print(json.dumps(record, sort_keys=True) if raw else line_for(record))
