"""Git smart-HTTP push bodies (`application/x-git-receive-pack-request`): commands and pack objects.

A `git push` over HTTP sends pkt-lines (`<old-id> <new-id> <ref>\\0<capabilities>`,
optional push options) and then a packfile: `PACK`, version, object count, then per
object a type/size varint header, for deltas the base (a negative offset, or the base
object's id), and a zlib stream; streams follow one another with nothing between.
Scanned as bytes, the objects are compressed and a committed secret is invisible.

Every object is inflated (bounded: its declared size, and the body's decoded-byte
budget shared by all objects, so a bomb ends as an error). Deltas are applied when
their base is in the same pack, so a secret assembled over several commits of one push
is whole; a delta against an object only the server has (a thin pack) is scanned as
its instructions, where the inserted bytes appear literally. Each object becomes one
value located `body:git-pack[<n>]` (n: its index in the pack); the commands and push
options are `body:git-command[<n>]`.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

from scanner.errors import BodyError

MEDIA_TYPE = "application/x-git-receive-pack-request"
_TYPES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
OFS_DELTA, REF_DELTA = 6, 7


@dataclass
class Pushed:
    commands: list[bytes]
    objects: list[bytes]  # inflated, deltas resolved where the base is in the pack
    kinds: list[int]  # each object's type in the pack (1-4, or 6/7 for a delta)


def _malformed(detail: str) -> BodyError:
    return BodyError("malformed-git-pack", detail)


def parse(body: bytes, budget: int, resolve: bool = True) -> Pushed:
    """Commands and objects of a receive-pack request body (`resolve=False`: deltas as their
    instructions, as a thin pack's are). Raises BodyError."""
    commands, pos = _pkt_lines(body)
    pack = _Pack(body, pos, budget, sha256=any(b"object-format=sha256" in c for c in commands[:1]), resolve=resolve)
    return Pushed(commands, pack.objects(), pack.kinds)


def _pkt_lines(body: bytes) -> tuple[list[bytes], int]:
    """pkt-lines up to the pack (or the end): `0000` flushes between commands and push options."""
    lines: list[bytes] = []
    pos = 0
    while pos < len(body) and body[pos : pos + 4] != b"PACK":
        head = body[pos : pos + 4]
        try:
            size = int(head, 16)
        except ValueError:
            raise _malformed(f"bad pkt-line length at byte {pos}") from None
        if len(head) < 4 or (0 < size < 4) or pos + size > len(body):
            raise _malformed(f"truncated pkt-line at byte {pos}")
        if size:
            lines.append(body[pos + 4 : pos + size])
        pos += max(size, 4)
    return lines, pos


class _Pack:
    def __init__(self, data: bytes, start: int, budget: int, sha256: bool, resolve: bool) -> None:
        self.data, self.start, self.budget, self.resolve = data, start, budget, resolve
        self.id_len = 32 if sha256 else 20
        self.inflated = 0
        self.by_offset: dict[int, tuple[int, bytes]] = {}  # resolved (type, content) by object offset
        self.by_id: dict[bytes, tuple[int, bytes]] = {}
        self.kinds: list[int] = []

    def objects(self) -> list[bytes]:
        d, pos = self.data, self.start
        if pos >= len(d):
            return []  # delete-only pushes carry no pack
        if d[pos : pos + 4] != b"PACK" or len(d) < pos + 12:
            raise _malformed("no pack header after the commands")
        version, count = int.from_bytes(d[pos + 4 : pos + 8], "big"), int.from_bytes(d[pos + 8 : pos + 12], "big")
        if version not in (2, 3):
            raise _malformed(f"pack version {version}")
        pos += 12
        out = []
        for n in range(count):
            content, pos = self._object(pos, n)
            out.append(content)
        if len(d) - pos not in (0, self.id_len):  # the trailer: the pack's checksum
            raise _malformed(f"{len(d) - pos} unexpected bytes after {count} objects")
        return out

    def _object(self, pos: int, n: int) -> tuple[bytes, int]:
        offset = pos
        kind, size, pos = self._header(pos)
        self.kinds.append(kind)
        base: tuple[int, bytes] | None = None
        if kind == OFS_DELTA:
            back, pos = self._offset(pos)
            base = self.by_offset.get(offset - back)
        elif kind == REF_DELTA:
            base = self.by_id.get(self.data[pos : pos + self.id_len])
            pos += self.id_len
        elif kind not in _TYPES:
            raise _malformed(f"object {n}: type {kind}")
        raw, pos = self._inflate(pos, size, n)
        if kind in _TYPES:
            self._keep(offset, kind, raw)
            return raw, pos
        if base is None or not self.resolve:
            return raw, pos  # a thin pack's delta: its inserted bytes are in the instructions
        content = self._apply(base[1], raw, n)
        self._keep(offset, base[0], content)
        return content, pos

    def _keep(self, offset: int, kind: int, content: bytes) -> None:
        self.by_offset[offset] = (kind, content)
        name = _TYPES[kind] + b" %d\0" % len(content)
        digest = hashlib.sha256 if self.id_len == 32 else hashlib.sha1
        self.by_id[digest(name + content).digest()] = (kind, content)

    def _header(self, pos: int) -> tuple[int, int, int]:
        d = self.data
        if pos >= len(d):
            raise _malformed("pack ends inside an object header")
        byte = d[pos]
        kind, size, shift = (byte >> 4) & 7, byte & 15, 4
        while byte & 0x80:
            pos += 1
            if pos >= len(d) or shift > 60:
                raise _malformed("bad object size")
            byte = d[pos]
            size |= (byte & 0x7F) << shift
            shift += 7
        return kind, size, pos + 1

    def _offset(self, pos: int) -> tuple[int, int]:
        d = self.data
        if pos >= len(d):
            raise _malformed("pack ends inside a delta offset")
        byte = d[pos]
        value = byte & 0x7F
        while byte & 0x80:
            pos += 1
            if pos >= len(d) or value > 1 << 56:
                raise _malformed("bad delta offset")
            byte = d[pos]
            value = ((value + 1) << 7) | (byte & 0x7F)
        return value, pos + 1

    def _spend(self, size: int) -> None:
        self.inflated += size
        if self.inflated > self.budget:
            raise BodyError("decompression-bomb", f"git pack: objects exceed {self.budget} bytes inflated")

    def _inflate(self, pos: int, size: int, n: int) -> tuple[bytes, int]:
        """One zlib stream: exactly `size` bytes out; returns them and where the next object starts."""
        self._spend(size)
        # A stream is never longer than its output plus deflate's stored-block overhead, so
        # feeding this much (not the rest of the pack) keeps `unused_data` small: linear work.
        feed = size + 5 * (size // 16383 + 1) + 64
        chunk = memoryview(self.data)[pos : pos + feed]
        z = zlib.decompressobj()
        try:
            out = z.decompress(chunk, size + 1)
        except zlib.error as exc:
            raise _malformed(f"object {n}: {exc}") from None
        if len(out) != size or not z.eof:
            raise _malformed(f"object {n}: {len(out)} bytes inflated, header says {size}")
        return out, pos + len(chunk) - len(z.unused_data)

    def _apply(self, base: bytes, delta: bytes, n: int) -> bytes:
        try:
            return self._apply_ops(base, delta, n)
        except IndexError:
            raise _malformed(f"object {n}: delta ends inside an instruction") from None

    def _apply_ops(self, base: bytes, delta: bytes, n: int) -> bytes:
        """git's delta format: source and target sizes, then copy (from base) and insert ops."""
        src, pos = _varint(delta, 0)
        size, pos = _varint(delta, pos)
        if src != len(base):
            raise _malformed(f"object {n}: delta base is {len(base)} bytes, delta says {src}")
        self._spend(size)
        out = bytearray()
        while pos < len(delta):
            op = delta[pos]
            pos += 1
            if op & 0x80:
                start, length, pos = _copy_args(delta, pos, op)
                if start + length > len(base):
                    raise _malformed(f"object {n}: delta copies past its base")
                out += base[start : start + length]
            elif op:
                out += delta[pos : pos + op]
                pos += op
            else:
                raise _malformed(f"object {n}: delta op 0")
        if len(out) != size:
            raise _malformed(f"object {n}: delta gives {len(out)} bytes, says {size}")
        return bytes(out)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 60:
            raise _malformed("bad delta size")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
        if not byte & 0x80:
            return value, pos


def _copy_args(delta: bytes, pos: int, op: int) -> tuple[int, int, int]:
    start = length = 0
    for i in range(4):
        if op & (1 << i):
            start |= delta[pos] << (8 * i)
            pos += 1
    for i in range(3):
        if op & (1 << (4 + i)):
            length |= delta[pos] << (8 * i)
            pos += 1
    return start, length or 0x10000, pos
