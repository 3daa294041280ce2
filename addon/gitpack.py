"""The commits in a pushed packfile, to prove that a branch update is a fast-forward.

A non-forced push of ``old -> new`` sends the commits reachable from ``new``
and not from what the server has; ``old`` is one of those ancestors. So the
update is a fast-forward exactly when the parents of the pushed commits lead
from ``new`` to ``old``. Whatever the pack cannot show (``new`` already on the
server, a commit stored as a delta of a server-side object, a pack too large to
inflate) counts as "not proven", and the push is refused.

Every object is inflated (a zlib stream has no length prefix, so the next one
starts where it ends), but only commits are kept. Limits bound the work: the
declared sizes must add up to at most ``max_inflated`` bytes and each object
must inflate to exactly its declared size.

Pure: imports nothing from mitmproxy.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

COMMIT, TREE, BLOB, TAG, OFS_DELTA, REF_DELTA = 1, 2, 3, 4, 6, 7
_NAMES = {COMMIT: b"commit", TREE: b"tree", BLOB: b"blob", TAG: b"tag"}
_CHUNK = 64 * 1024
_KEEP_DELTA = 64 * 1024  # deltas this small are kept: one of them may rebuild a commit
MAX_INFLATED = 256 * 1024 * 1024


class PackError(ValueError):
    """The packfile is malformed, or too large to check."""


@dataclass(slots=True)
class _Entry:
    kind: int  # resolved type once known (COMMIT, ...), else OFS_DELTA / REF_DELTA
    data: bytes | None  # kept content (commits, small deltas), else None
    base_offset: int | None = None
    base_oid: bytes | None = None


@dataclass(frozen=True)
class PackCommits:
    """Commit oid (hex) -> parent oids, for every commit the pack holds."""

    parents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unresolved: int = 0  # deltas that could not be rebuilt (their base is not in the pack)

    def fast_forward(self, old: str, new: str) -> str | None:
        """None when ``new`` reaches ``old`` through the pack's commits, else why not."""
        if new not in self.parents:
            return f"{new[:12]} is not among the pushed commits, so its history cannot be checked"
        seen, queue = {new}, deque([new])
        while queue:
            for parent in self.parents.get(queue.popleft(), ()):
                if parent == old:
                    return None
                if parent not in seen and parent in self.parents:
                    seen.add(parent)
                    queue.append(parent)
        return f"{old[:12]} is not an ancestor of {new[:12]} in the pushed commits"


def _varint_size(view: memoryview, pos: int) -> tuple[int, int, int]:
    """The object header: (type, size, next)."""
    byte = _at(view, pos)
    kind, size, shift = (byte >> 4) & 7, byte & 15, 4
    while byte & 0x80:
        pos += 1
        byte = _at(view, pos)
        size |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            raise PackError("object size varint too long")
    return kind, size, pos + 1


def _ofs(view: memoryview, pos: int) -> tuple[int, int]:
    byte = _at(view, pos)
    offset = byte & 0x7F
    while byte & 0x80:
        pos += 1
        byte = _at(view, pos)
        offset = ((offset + 1) << 7) | (byte & 0x7F)
        if offset > 1 << 62:
            raise PackError("delta offset too large")
    return offset, pos + 1


def _at(view: memoryview, pos: int) -> int:
    if pos >= len(view):
        raise PackError("truncated packfile")
    return view[pos]


def _inflate(view: memoryview, pos: int, size: int, keep: bool) -> tuple[bytes | None, int]:
    """Inflate the zlib stream at ``pos`` that must give ``size`` bytes; (content if kept, end)."""
    stream = zlib.decompressobj()
    out = bytearray() if keep else None
    produced = fed = 0
    while not stream.eof:
        if stream.unconsumed_tail:
            chunk = stream.unconsumed_tail
        else:
            chunk = view[pos + fed : pos + fed + _CHUNK]
            if not chunk:
                raise PackError("truncated object in the packfile")
            fed += len(chunk)
        try:
            part = stream.decompress(chunk, min(size - produced + 1, _CHUNK))
        except zlib.error as exc:
            raise PackError(f"corrupt object data: {exc}") from None
        produced += len(part)
        if produced > size:
            raise PackError("an object inflates to more than its declared size")
        if out is not None:
            out += part
    if produced != size:
        raise PackError("an object inflates to less than its declared size")
    return (bytes(out) if out is not None else None), pos + fed - len(stream.unused_data)


def read_commits(pack: bytes, oid_length: int = 40, max_inflated: int = MAX_INFLATED) -> PackCommits:
    """Parse ``pack`` (version 2 or 3) and return its commits with their parents."""
    view = memoryview(pack)
    hash_bytes = oid_length // 2
    if pack[:4] != b"PACK" or int.from_bytes(pack[4:8], "big") not in (2, 3) or len(pack) < 12 + hash_bytes:
        raise PackError("not a version 2 or 3 packfile")
    count = int.from_bytes(pack[8:12], "big")
    entries: dict[int, _Entry] = {}
    pos, total = 12, 0
    for _ in range(count):
        start = pos
        kind, size, pos = _varint_size(view, pos)
        total += size
        if total > max_inflated:
            raise PackError(f"the pack inflates to more than {max_inflated} bytes: too large to check")
        entry, pos = _header(view, pos, start, kind, entries, hash_bytes)
        keep = entry.kind == COMMIT or (entry.kind in (OFS_DELTA, REF_DELTA) and size <= _KEEP_DELTA)
        entry.data, pos = _inflate(view, pos, size, keep)
        entries[start] = entry
    _check_trailer(pack, pos, hash_bytes)
    return _resolve(entries, hashlib.sha1 if hash_bytes == 20 else hashlib.sha256)


def _header(view: memoryview, pos: int, start: int, kind: int, entries: Mapping[int, _Entry], hash_bytes: int) -> tuple[_Entry, int]:
    if kind in _NAMES:
        return _Entry(kind, None), pos
    if kind == OFS_DELTA:
        offset, pos = _ofs(view, pos)
        base = start - offset
        if base not in entries:
            raise PackError("a delta's base offset names no object")
        base_kind = entries[base].kind
        # A delta of a known type has that type; of a delta, stays unknown.
        return _Entry(base_kind if base_kind in _NAMES else OFS_DELTA, None, base_offset=base), pos
    if kind == REF_DELTA:
        oid = bytes(view[pos : pos + hash_bytes])
        if len(oid) != hash_bytes:
            raise PackError("truncated packfile")
        return _Entry(REF_DELTA, None, base_oid=oid), pos + hash_bytes
    raise PackError(f"unknown object type {kind}")


def _check_trailer(pack: bytes, pos: int, hash_bytes: int) -> None:
    if len(pack) - pos != hash_bytes:
        raise PackError("bytes after the packfile's objects" if len(pack) - pos > hash_bytes else "truncated packfile")
    digest = (hashlib.sha1 if hash_bytes == 20 else hashlib.sha256)(memoryview(pack)[:pos]).digest()
    if digest != pack[pos:]:
        raise PackError("the packfile's checksum does not match its content")


def _resolve(entries: dict[int, _Entry], algo) -> PackCommits:
    """Rebuild delta'd objects whose base is known, then read every commit's parents."""
    resolved: dict[int, bytes] = {}  # offset -> commit content
    by_oid: dict[bytes, int] = {}
    for offset, entry in entries.items():
        if entry.kind == COMMIT and entry.base_offset is None and entry.base_oid is None and entry.data is not None:
            _add(offset, entry.data, resolved, by_oid, algo)
    pending = [o for o, e in entries.items() if e.base_offset is not None or e.base_oid is not None]
    progress = True
    while pending and progress:
        progress, left = False, []
        for offset in pending:
            content = _rebuild(entries[offset], resolved, by_oid)
            if content is None:
                left.append(offset)
            else:
                _add(offset, content, resolved, by_oid, algo)
                progress = True
        pending = left
    parents = {algo(_object_header(c) + c).hexdigest(): _parents(c) for c in resolved.values()}
    unresolved = sum(1 for o in pending if entries[o].kind in (COMMIT, OFS_DELTA, REF_DELTA))
    return PackCommits(parents, unresolved)


def _rebuild(entry: _Entry, resolved: Mapping[int, bytes], by_oid: Mapping[bytes, int]) -> bytes | None:
    if entry.data is None or entry.kind not in (COMMIT, OFS_DELTA, REF_DELTA):
        return None  # a tree, blob or tag delta, or a large one: not a commit we can rebuild
    base_offset = entry.base_offset if entry.base_offset is not None else by_oid.get(entry.base_oid or b"")
    base = resolved.get(base_offset) if base_offset is not None else None
    return None if base is None else apply_delta(base, entry.data)


def _add(offset: int, content: bytes, resolved: dict[int, bytes], by_oid: dict[bytes, int], algo) -> None:
    if not content.startswith(b"tree "):
        return  # a rebuilt delta of unknown type that is not a commit
    resolved[offset] = content
    by_oid[algo(_object_header(content) + content).digest()] = offset


def _object_header(content: bytes) -> bytes:
    return b"commit %d\0" % len(content)


def _parents(content: bytes) -> tuple[str, ...]:
    """Parent oids, read the way git does: the header lines right after ``tree``."""
    lines = content.split(b"\n\n", 1)[0].split(b"\n")
    if not lines[0].startswith(b"tree "):
        raise PackError("a commit without a tree line")
    parents = []
    for line in lines[1:]:
        if not line.startswith(b"parent "):
            break
        oid = line[7:]
        if len(oid) not in (40, 64) or not all(c in b"0123456789abcdef" for c in oid):
            raise PackError("a commit with a malformed parent line")
        parents.append(oid.decode())
    return tuple(parents)


def apply_delta(base: bytes, delta: bytes) -> bytes:
    """git's delta format: source size, target size, then copy and insert instructions."""
    view = memoryview(delta)
    src_size, pos = _delta_varint(view, 0)
    dst_size, pos = _delta_varint(view, pos)
    if src_size != len(base):
        raise PackError("a delta's base has the wrong size")
    out = bytearray()
    while pos < len(view):
        op = view[pos]
        pos += 1
        if op & 0x80:
            offset, size, pos = _copy_args(view, pos, op)
            if offset + size > len(base):
                raise PackError("a delta copies past the end of its base")
            out += base[offset : offset + size]
        elif op:
            if pos + op > len(view):
                raise PackError("truncated delta")
            out += view[pos : pos + op]
            pos += op
        else:
            raise PackError("delta opcode 0 is reserved")
        if len(out) > dst_size:
            raise PackError("a delta builds more than its target size")
    if len(out) != dst_size:
        raise PackError("a delta builds less than its target size")
    return bytes(out)


def _delta_varint(view: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = _at(view, pos)
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 63:
            raise PackError("delta size varint too long")


def _copy_args(view: memoryview, pos: int, op: int) -> tuple[int, int, int]:
    offset = size = 0
    for i in range(4):
        if op & (1 << i):
            offset |= _at(view, pos) << (8 * i)
            pos += 1
    for i in range(3):
        if op & (0x10 << i):
            size |= _at(view, pos) << (8 * i)
            pos += 1
    return offset, size or 0x10000, pos
