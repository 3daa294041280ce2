"""The audit log: one JSON line per decision, append-only, never a secret value.

What keeps secrets out: query strings are never written; a path or host that
carried a finding is written as ``<redacted>``; anything the scanner did not
see (requests refused before the scan) and every finding location (its keys
are chosen by the agent) has long letter-digit runs, the shape of tokens,
replaced by ``<redacted>``. No header, cookie or body value is ever written.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from addon.decision import Decision
from addon.scanning import Finding

REDACTED = "<redacted>"
_TOKENISH = re.compile(r"[A-Za-z0-9]{16,}")


def redact_tokens(text: str) -> str:
    return _TOKENISH.sub(REDACTED, text)


@dataclass(frozen=True, slots=True)
class Event:
    """What the audit needs to know about one decided request (or message, or tunnel)."""

    request_id: str
    kind: str  # http | connect | websocket | tcp
    decision: Decision
    agent: str | None = None
    client: str = ""
    method: str = ""
    scheme: str = ""
    host: str = ""
    port: int | None = None
    path: str = ""  # without the query
    scanned: bool = False  # the scanner saw this request's URL
    findings: Sequence[Finding] = field(default_factory=tuple)
    scan_mode: str = ""
    address: str = ""  # the upstream address the proxy connects to (allowed requests)
    request_bytes: int | None = None
    scan_ms: float | None = None
    total_ms: float | None = None
    credentials: Sequence[str] = ()  # names of the credential bindings used (never a value)


def _url_part(value: str, event: Event, location_prefix: str) -> str:
    if any(f.location.startswith(location_prefix) for f in event.findings):
        return REDACTED
    return value if event.scanned else redact_tokens(value)


def record(event: Event, now: datetime | None = None) -> dict[str, object]:
    stamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "time": stamp,
        "request_id": event.request_id,
        "kind": event.kind,
        "agent": event.agent,
        "client": event.client,
        "method": event.method,
        "scheme": event.scheme,
        "host": _url_part(event.host, event, "url:host"),
        "port": event.port,
        "path": _url_part(event.path, event, "url:path"),
        "decision": event.decision.verdict.value,
        "reason": event.decision.reason,
        "rule": event.decision.rule,
        "findings": [
            {
                "rule": f.rule,
                "source": f.source,
                "location": redact_tokens(f.location),
                "fingerprint": f.fingerprint,
            }
            for f in event.findings
        ],
        "scan_mode": event.scan_mode,
        "address": event.address,
        "request_bytes": event.request_bytes,
        "scan_ms": _ms(event.scan_ms),
        "total_ms": _ms(event.total_ms),
        "credentials": list(event.credentials),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class AuditLog:
    """Appends one line per record with a single write(2) on an O_APPEND descriptor.

    Unbuffered on purpose: a line is on disk (in the page cache) when the
    decision takes effect, and concurrent writers never interleave a line.
    """

    def __init__(self, path: str):
        self.path = path
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, entry: dict[str, object]) -> None:
        line = json.dumps(entry, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"short write to the audit log {self.path} ({written} of {len(line)} bytes)")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
