"""Just enough of git's smart HTTP protocol for `git push` to an empty
repository to succeed, so the sink captures the pushed refs and pack."""

from __future__ import annotations

import gzip
from dataclasses import dataclass

ZERO_ID = "0" * 40
CAPABILITIES = "report-status delete-refs ofs-delta agent=yolo-cage-sink"


def pkt_line(data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return f"{len(raw) + 4:04x}".encode() + raw


FLUSH = b"0000"


def parse_pkt_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """pkt-lines up to the first flush, and the bytes after it (the pack)."""
    lines, pos = [], 0
    while pos + 4 <= len(data):
        size = int(data[pos : pos + 4], 16)
        if size == 0:
            return lines, data[pos + 4 :]
        if size < 4:
            raise ValueError(f"bad pkt-line length {size}")
        lines.append(data[pos + 4 : pos + size])
        pos += size
    raise ValueError("pkt-lines end without a flush")


def advertisement(service: str) -> bytes:
    """info/refs for an empty repository: no refs, only capabilities."""
    body = pkt_line(f"# service={service}\n") + FLUSH
    body += pkt_line(f"{ZERO_ID} capabilities^{{}}\0{CAPABILITIES}\n".encode()) + FLUSH
    return body


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str


def parse_push(body: bytes, content_encoding: str = "") -> tuple[list[RefUpdate], list[str], bytes]:
    """A receive-pack request: the ref updates, the client's capabilities, and the pack."""
    if "gzip" in content_encoding.lower():
        body = gzip.decompress(body)
    lines, pack = parse_pkt_lines(body)
    updates, caps = [], []
    for i, line in enumerate(lines):
        command, _, cap_text = line.rstrip(b"\n").partition(b"\0")
        if i == 0 and cap_text:
            caps = cap_text.decode("ascii", "replace").split()
        old, new, ref = command.decode("ascii", "replace").split(" ", 2)
        updates.append(RefUpdate(old, new, ref))
    return updates, caps, pack


def report_status(updates: list[RefUpdate]) -> bytes:
    body = pkt_line("unpack ok\n")
    for update in updates:
        body += pkt_line(f"ok {update.ref}\n")
    return body + FLUSH
