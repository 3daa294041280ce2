"""The scanned view of a request: every value, in document order, joined without separators.

Joining adjacent values (JSON strings, query values, header values) with nothing in
between means a token cut in two adjacent fields is whole again in the buffer,
so one hyperscan pass finds it. Offsets map back to a location lazily: building
JSON paths costs a second walk, paid only when something was found.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scanner.verify import entropy

Value = str | bytes


def safe_name(name: str | bytes) -> str:
    """A key / header / field name fit for a location: never a possible secret."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    ok = 0 < len(name) <= 40 and all(c.isalnum() or c in "_-.$@:" for c in name)
    if ok and (len(name) < 16 or entropy(name) < 3.0):
        return name
    return "<name>"


@dataclass
class Part:
    """One place in the request (URL, headers, body...): values and their locations."""

    values: Sequence[Value]
    locations: Sequence[str] | Callable[[], Sequence[str]]
    _blob: bytes | None = None
    _offsets: list[int] | None = None

    @property
    def blob(self) -> bytes:
        if self._blob is None:
            vals = self.values
            if vals and isinstance(vals[0], str) and all(isinstance(v, str) for v in vals):
                self._blob = "".join(vals).encode("utf-8", "surrogatepass")  # type: ignore[arg-type]
            else:
                self._blob = b"".join(_b(v) for v in vals)
        return self._blob

    def offsets(self) -> list[int]:
        """Start offset of each value in `blob`."""
        if self._offsets is None:
            out, pos = [], 0
            ascii_only = len(self.blob) == sum(len(v) for v in self.values)
            for v in self.values:
                out.append(pos)
                pos += len(v) if ascii_only else len(_b(v))
            self._offsets = out
        return self._offsets

    def location(self, index: int) -> str:
        if callable(self.locations):
            self.locations = self.locations()
        return self.locations[index]


def _b(v: Value) -> bytes:
    return v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v


@dataclass
class View:
    parts: list[Part] = field(default_factory=list)
    _data: bytes | None = None
    _starts: list[int] | None = None

    def add(self, part: Part) -> None:
        if part.values:
            self.parts.append(part)
            self._data = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            blobs = [p.blob for p in self.parts]
            self._data = b"".join(blobs)
            starts, pos = [], 0
            for b in blobs:
                starts.append(pos)
                pos += len(b)
            self._starts = starts
        return self._data

    def bounds(self, offset: int) -> tuple[int, int]:
        """(start, end) of the value holding `offset`, without building locations."""
        start, end, _, _ = self._find(offset)
        return start, end

    def segment(self, offset: int) -> tuple[int, int, str]:
        """(segment start, segment end, location) of the value holding `offset`."""
        start, end, part, index = self._find(offset)
        return start, end, part.location(index)

    def _find(self, offset: int) -> tuple[int, int, Part, int]:
        _ = self.data
        assert self._starts is not None
        pi = max(0, bisect_right(self._starts, offset) - 1)
        part = self.parts[pi]
        base = self._starts[pi]
        offs = part.offsets()
        vi = max(0, bisect_right(offs, offset - base) - 1)
        end = offs[vi + 1] if vi + 1 < len(offs) else len(part.blob)
        return base + offs[vi], base + end, part, vi

    def heads(self, n: int, limit: int) -> list[tuple[bytes, int, int, bool]]:
        """The first `n` bytes of up to `limit` values, with (part, value) indexes and whether that is
        the whole value (split probes)."""
        out = []
        for pi, part in enumerate(self.parts):
            for vi, v in enumerate(part.values):
                if v:
                    out.append((_b(v[:n]), pi, vi, len(v) <= n))
                    if len(out) >= limit:
                        return out
        return out

    def location_of(self, part: int, value: int) -> str:
        return self.parts[part].location(value)


# --- JSON ---------------------------------------------------------------------------


def json_values(doc: object, key_is_secret: Callable[[str], bool]) -> tuple[list[str], list[str], list[str]]:
    """String values, keys, and string values under secret-ish keys, in document order."""
    values: list[str] = []
    keys: list[str] = []
    keyed: list[str] = []
    stack: list[object] = [doc]
    pop, push, add_v, add_k = stack.pop, stack.append, values.append, keys.append
    while stack:
        node = pop()
        t = type(node)
        if t is str:
            add_v(node)  # type: ignore[arg-type]
        elif t is dict:
            items = list(node.items())  # type: ignore[union-attr]
            for k, v in reversed(items):
                push(v)
                if type(v) is str and key_is_secret(k):
                    keyed.append(v)
            keys.extend(k for k, _ in items)
        elif t is list:
            stack.extend(reversed(node))  # type: ignore[arg-type]
    return values, keys, keyed


def json_paths(doc: object, prefix: str) -> list[str]:
    """Location of each string value, in the same order as json_values()."""
    paths: list[str] = []
    stack: list[tuple[object, str]] = [(doc, "$")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            paths.append(prefix + path)
        elif isinstance(node, dict):
            for k, v in reversed(list(node.items())):
                stack.append((v, f"{path}.{safe_name(k)}"))
        elif isinstance(node, list):
            for i in range(len(node) - 1, -1, -1):
                stack.append((node[i], f"{path}[{i}]"))
    return paths
