"""Reading the attacker sink's capture: events, their bytes, and whose probe sent them.

The capture format is the sink's (``images/sink/README.md``): JSON lines, one
event each, raw bytes base64 in fields ending ``_b64``. Every string and every
decoded ``_b64`` field of an event becomes a :class:`~kit.redteam.leaksearch.Blob`;
DNS query names are marked as such (labels joined, case folded). Events of one
TCP connection share their markers (the ``connect`` event carries no data).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from kit.redteam.leaksearch import Blob

MARKER = re.compile(r"rt-[0-9a-f]{6}-\d{3}[ac]\d+", re.I)
_SKIP_FIELDS = {"seq", "ts", "kind", "listener", "conn", "src", "dst", "body_text", "text"}


def marker(run_id: str, index: int, side: str, k: int) -> str:
    """``rt-<run>-<row>a<k>`` for the k-th attack probe of a row, ``c`` for its control."""
    return f"rt-{run_id}-{index:03d}{side}{k}"


@dataclass
class Event:
    seq: int
    kind: str
    listener: str
    src: str
    raw: dict
    markers: set[str] = field(default_factory=set)

    @property
    def src_ip(self) -> str:
        src = self.src
        if src.startswith("["):
            src = src[1 : src.index("]")]
        elif src.count(":") == 1:
            src = src.rsplit(":", 1)[0]
        return src.removeprefix("::ffff:")

    def blobs(self, index: int) -> Iterator[Blob]:
        for name, value in self.raw.items():
            if name in _SKIP_FIELDS or value is None:
                continue
            yield from _field_blobs(index, name, value, self.kind == "dns" and name == "qname")


def _field_blobs(index: int, name: str, value: object, is_dns: bool) -> Iterator[Blob]:
    if isinstance(value, str):
        yield _string_blob(index, name, value, is_dns)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if _is_header(item):
                yield _string_blob(index, f"{name}:{item[0]}", str(item[1]), False)
            else:
                yield from _field_blobs(index, f"{name}[{i}]", item, False)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _field_blobs(index, f"{name}.{key}", item, False)


def _is_header(item: object) -> bool:
    return isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)


def _string_blob(index: int, name: str, value: str, is_dns: bool) -> Blob:
    if name.endswith("_b64"):
        try:
            return Blob(index, name.removesuffix("_b64"), base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            pass
    return Blob(index, name, value.encode("utf-8", "surrogateescape"), dns=is_dns)


def parse(lines: Iterable[str]) -> list[Event]:
    events = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        events.append(Event(int(raw.get("seq", 0)), str(raw.get("kind", "")), str(raw.get("listener", "")),
                            str(raw.get("src") or ""), raw))
    attribute(events)
    return events


def attribute(events: Sequence[Event]) -> None:
    """Find the probe markers in each event; share them across one TCP connection's events."""
    by_conn: dict[tuple[str, object], set[str]] = {}
    for index, event in enumerate(events):
        for blob in event.blobs(index):
            event.markers.update(m.lower() for m in MARKER.findall(blob.data.decode("latin-1")))
        conn = event.raw.get("conn")
        if conn is not None:
            by_conn.setdefault((event.listener, conn), set()).update(event.markers)
    for event in events:
        conn = event.raw.get("conn")
        if conn is not None:
            event.markers |= by_conn[(event.listener, conn)]


def blobs(events: Sequence[Event]) -> Iterator[Blob]:
    for index, event in enumerate(events):
        for blob in event.blobs(index):
            yield Blob(blob.event, f"{event.kind}#{event.seq} {blob.where}", blob.data, tuple(sorted(event.markers)), blob.dns)


# The field holding what the sender sent, per event (first present): the
# others repeat it (a body inside raw, a pack inside its request).
_PRIMARY = ("raw_b64", "data_b64", "body_b64", "line_b64")


def size(events: Sequence[Event]) -> int:
    """Bytes the sink received, as recorded: each event's own payload, DNS names included."""
    total = 0
    for event in events:
        if event.kind == "dns":
            total += len(str(event.raw.get("qname", "")))
            continue
        if event.kind == "git-push":
            continue
        field_name = next((f for f in _PRIMARY if event.raw.get(f)), None)
        if field_name:
            total += len(base64.b64decode(event.raw[field_name]))
    return total


def foreign_sources(events: Sequence[Event], allowed: Iterable[str]) -> list[Event]:
    """Events whose sender is not the proxy: something reached the sink around it."""
    allowed = set(allowed)
    return [e for e in events if e.src and e.src_ip not in allowed]
