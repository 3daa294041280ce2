"""The audit log: one JSON line per decision, append-only, never a secret value.

What keeps secrets out: query strings are never written; a path or host that
carried a finding (a host: in the URL, the CONNECT target, ``Host`` or
``:authority``) is written as ``<redacted>``; anything the scanner did not
see or whose verdict was not taken (requests refused before it) and every finding location (its keys
are chosen by the agent) has long letter-digit runs, the shape of tokens,
replaced by ``<redacted>``. No header, cookie or body value is ever written.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from addon.decision import Decision
from addon.scanning import Finding

REDACTED = "<redacted>"
_TOKENISH = re.compile(r"[A-Za-z0-9]{16,}")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)  # built once: json.dumps builds one per call
# Where the scanner reports what it found in the request's host name.
_HOST_LOCATIONS = ("url:host", "header:host", "header::authority")
_PATH_LOCATIONS = ("url:path",)


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
    placeholders: Sequence[str] = ()  # bindings whose own placeholder was in the body, harmlessly (names only)


def _url_part(value: str, event: Event, locations: tuple[str, ...]) -> str:
    if event.findings and any(
        f.location == loc or f.location.startswith(loc + ":") for f in event.findings for loc in locations
    ):
        return REDACTED
    return value if event.scanned else redact_tokens(value)


class _Clock:
    """UTC stamps to the millisecond ("2026-11-30T20:34:16.123Z"); the text up to the second is reused within it."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def stamp(self, now: datetime | None = None) -> str:
        if now is not None:
            return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        seconds, fraction = divmod(time.time(), 1.0)
        whole = int(seconds)
        if whole != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = whole
        return f"{self._prefix}.{min(int(fraction * 1000), 999):03d}Z"


_CLOCK = _Clock()


def record(event: Event, now: datetime | None = None) -> dict[str, object]:
    stamp = _CLOCK.stamp(now)
    return {
        "time": stamp,
        "request_id": event.request_id,
        "kind": event.kind,
        "agent": event.agent,
        "client": event.client,
        "method": event.method,
        "scheme": event.scheme,
        "host": _url_part(event.host, event, _HOST_LOCATIONS),
        "port": event.port,
        "path": _url_part(event.path, event, _PATH_LOCATIONS),
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
        "placeholders": list(event.placeholders),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class Repeats:
    """Agents' healthchecks (``yolo-cage.internal/healthz``, every few seconds) as one line per window.

    The first such decision of a key (client address, kind, method, path) is
    written; the ones after it within ``window`` seconds are only counted; the
    next one after the window is written with ``repeats``: how many decisions
    the line stands for (itself and those counted since the last line).
    :meth:`flush` gives the lines still owed (at shutdown). Nothing here was
    forwarded: the proxy answered each itself.
    """

    def __init__(self, window: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.window, self._clock = window, clock
        self._state: dict[tuple[str, ...], tuple[float, int, dict[str, object] | None]] = {}

    def admit(self, key: tuple[str, ...], entry: dict[str, object]) -> dict[str, object] | None:
        """The line to write for ``entry`` (with ``repeats``), or None when it is only counted."""
        now = self._clock()
        written, pending, _ = self._state.get(key, (float("-inf"), 0, None))
        if now - written >= self.window:
            self._state[key] = (now, 0, None)
            return {**entry, "repeats": pending + 1}
        self._state[key] = (written, pending + 1, entry)
        return None

    def flush(self) -> list[dict[str, object]]:
        owed = [{**entry, "repeats": pending} for _, pending, entry in self._state.values() if entry is not None]
        self._state.clear()
        return owed


def encode_line(entry: dict[str, object]) -> bytes:
    """One JSON line, ASCII only (a terminal shows it as written: no bidi or control characters raw)."""
    try:
        line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate from undecodable bytes: the json module escapes it
        line = b""
    if not line or not line.isascii():
        line = _ENCODER.encode(entry).encode() + b"\n"
    return line


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
        line = encode_line(entry)
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"short write to the audit log {self.path} ({written} of {len(line)} bytes)")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
