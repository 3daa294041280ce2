"""A JSON body scanned as its raw bytes; its structure is recovered only around hits.

Building the decoded view of a 1 MB Claude Code request (orjson objects, a walk over
every value, offsets, paths) costs 5-10 ms of Python and tens of thousands of
allocations, while one hyperscan pass over the same bytes costs under 1 ms, and
almost every body is clean. So a JSON body is validated (orjson, in C), scanned raw,
and only around hits is a *local view* built: the strings of a window of the raw
body, JSON-unescaped, values joined as the full view joins them (splits), keys
apart, scanned by the same engine. A JSON path is computed for a finding only.

Raw bytes differ from the decoded values only at escapes and between fields; the raw
pass carries triggers for both (scanner/jsontriggers.py).

Strings are found inside a window, never by a pass over the body: with escaped quotes
and backslashes blanked, the quotes left cut the window into pieces that alternate
between string content and structure, and structure holds only `[]{},:`, white space,
numbers, true/false/null: one piece holding anything else tells which pieces are
strings. Only when no piece does (a run of strings like "1", ",") are the quotes
counted from the start of the body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate

import orjson

import re2

from scanner.bare import json_candidates
from scanner.decoders import unescape
from scanner.jsontriggers import ASSIGN_START, ENDS, STARTS
from scanner.segments import Part, View, json_paths, json_values, safe_name

WINDOW = 2048  # bytes of context on each side of a hit: > the decode radius + margin; longer rules get more
KEYS = "keys"
JOIN_FAR = 1 << 16  # raw bytes searched for the value next to a window that ends between strings...
MAX_JOIN_STRINGS = 64  # ...stepping over at most this many keys
JOIN_REACH = 1024  # bytes of that value taken in
MAX_KEYED_VALUE = 2048  # raw bytes of a value under a secret-ish key that are checked (the check takes <= 256 chars)
_WS = b" \t\r\n"
_STRUCTURE = b" \t\r\n,:[]{}0123456789.eE+-truefalsn"
_QUOTE = 0x22
_BACKSLASH = 0x5C
_KEY_MARK = object()
_ASSIGN_START = re2.compile(ASSIGN_START)


@dataclass(slots=True)
class Window:
    lo: int
    hi: int


@dataclass(slots=True)
class Piece:
    """A string (or the part of one) inside a window: raw span, opening quote (-1: before the window)."""

    lo: int
    hi: int
    open: int
    closed: bool  # its closing quote is inside the window
    key: bool = False


@dataclass
class Local:
    """What a window holds: value strings (in order), keys, and (key, value) pairs."""

    values: list[Piece] = field(default_factory=list)
    keys: list[Piece] = field(default_factory=list)
    pairs: list[tuple[Piece, Piece]] = field(default_factory=list)


@dataclass
class RawJson:
    data: bytes
    prefix: str  # location prefix: "body:" or "body:multipart:<name>:"
    _masked: bytes | None = None
    _paths: list[str] | None = None
    _path_error: bool = False
    _cursor: tuple[int, int] = (0, 0)  # (offset, delimiting quotes before it) of the last count

    @property
    def masked(self) -> bytes:
        """The whole body masked (locations and split probes only: 2 ms for 1 MB)."""
        if self._masked is None:
            self._masked = _mask(self.data)
        return self._masked

    # -- a window's strings ------------------------------------------------------------

    def pieces(self, win: Window) -> Local:
        """The strings of raw [lo, hi): values in order, keys, and key-value pairs."""
        lo = _run_start(self.data, win.lo)
        parts = _mask(self.data[lo : win.hi]).split(b'"')
        starts = list(accumulate((len(p) + 1 for p in parts), initial=lo))
        first_is_string = self._first_is_string(parts, lo)
        out = Local()
        prev: Piece | None = None
        paired = False  # the structure since `prev` is exactly `:`: the next string is its value
        for i, part in enumerate(parts):
            if (i % 2 == 0) != first_is_string:
                if prev is not None and prev.closed and part.lstrip(_WS)[:1] == b":":
                    prev.key = True
                    paired = part.strip(_WS) == b":"
                continue
            s, e = starts[i], starts[i] + len(part)
            closed = i < len(parts) - 1
            start = self._escape_start(max(s, win.lo), max(0, win.lo - 6)) if i == 0 else s
            piece = Piece(start, e if closed else self._escape_start(e, s), s - 1 if i else -1, closed)
            if prev is not None and prev.key and paired:
                out.pairs.append((prev, piece))
            prev, paired = piece, False
            out.values.append(piece)
        out.keys = [p for p in out.values if p.key]
        out.values = [p for p in out.values if not p.key]
        if not first_is_string:
            self._join_before(out, lo)
        if ((len(parts) - 1) % 2 == 0) != first_is_string:
            self._join_after(out, win.hi)
        return out

    def _join_before(self, out: Local, lo: int) -> None:
        """A window that starts between strings: the tail of the value before it, however much
        structure and how many keys lie between (the full view joins them)."""
        got = self._value_before(lo)
        if got is not None:
            o, c = got
            out.values.insert(0, Piece(self._escape_start(max(o + 1, c - JOIN_REACH), o + 1), c, o, True))

    def _join_after(self, out: Local, hi: int) -> None:
        got = self._value_after(hi)
        if got is not None:
            o, c = got
            end = min(c, o + 1 + JOIN_REACH)
            out.values.append(Piece(o + 1, self._escape_start(end, o + 1), o, end == c))

    def _value_after(self, pos: int) -> tuple[int, int] | None:
        """(opening, closing quote) of the first value string after `pos`, a place between strings."""
        d, limit = self.data, min(len(self.data), pos + JOIN_FAR)
        for _ in range(MAX_JOIN_STRINGS):
            o = d.find(b'"', pos, limit)
            c = self._closing(o + 1, limit) if o >= 0 else -1
            if c < 0:
                return None
            if d[c + 1 : c + 65].lstrip(_WS)[:1] != b":":
                return o, c
            pos = c + 1  # a key
        return None

    def _value_before(self, pos: int) -> tuple[int, int] | None:
        """(opening, closing quote) of the last value string before `pos`, a place between strings."""
        d, floor = self.data, max(0, pos - JOIN_FAR)
        for _ in range(MAX_JOIN_STRINGS):
            c = d.rfind(b'"', floor, pos)
            o = self._opening(c, floor) if c >= 0 else -1
            if o < 0:
                return None
            if d[c + 1 : c + 65].lstrip(_WS)[:1] != b":":
                return o, c
            pos = o  # a key
        return None

    def _closing(self, start: int, limit: int) -> int:
        """The closing quote of the string whose content starts at `start` (-1: beyond `limit`)."""
        q = start - 1
        for _ in range(16):
            q = self.data.find(b'"', q + 1, limit)
            if q < 0 or not escaped(self.data, q):
                return q
        m = _mask(self.data[start:limit]).find(b'"')  # `start` follows a quote: no escape is cut
        return start + m if m >= 0 else -1

    def _opening(self, close: int, floor: int) -> int:
        """The opening quote of the string that `close` closes (-1: before `floor`)."""
        q = close
        for _ in range(16):
            q = self.data.rfind(b'"', floor, q)
            if q < 0 or not escaped(self.data, q):
                return q
        lo = _run_start(self.data, floor)
        m = _mask(self.data[lo:close]).rfind(b'"')
        return lo + m if m >= 0 else -1

    def _first_is_string(self, parts: list[bytes], lo: int) -> bool:
        for i, part in enumerate(parts):
            if _is_string(part):
                return i % 2 == 0
        # Every piece could be structure: count the delimiting quotes before the window.
        return self.masked.count(b'"', 0, lo) % 2 == 1

    # -- strings joined to a hit --------------------------------------------------------

    def joined(self, end: int, joins: tuple[str, bytes]) -> bool:
        """Does a string the decoded view joins to the hit's continue it as `joins` says?

        STARTS / ASSIGNS: the hit ends with the closing quote of its string (at end - 1); ENDS:
        the hit starts a string, and the piece must end a string before it."""
        how, piece = joins
        if how == ENDS:
            opening = self.data.rfind(b'"', 0, end)
            return any(s.endswith(piece) for s in self._strings_before(opening))
        after = self._strings_after(end - 1)
        if how == STARTS:
            return any(s.startswith(piece) for s in after)
        return any(_ASSIGN_START.search(s) for s in after)

    def _strings_after(self, close: int) -> list[bytes]:
        """The raw starts of the next value and of the next value that is not enum-like."""
        if self.data[close + 1 : close + 65].lstrip(_WS)[:1] == b":":
            return []  # the hit's string is a key: keys are not joined to values
        out: list[bytes] = []
        pos = close + 1
        for _ in range(MAX_JOIN_STRINGS):
            got = self._value_after(pos)
            if got is None:
                break
            content = self.data[got[0] + 1 : min(got[1], got[0] + 1 + JOIN_REACH)]
            out.append(content)
            if not enumish(content):
                break
            pos = got[1] + 1
        return out

    def _strings_before(self, opening: int) -> list[bytes]:
        """The raw ends of the previous value and of the previous value that is not enum-like."""
        out: list[bytes] = []
        pos = opening
        for _ in range(MAX_JOIN_STRINGS):
            got = self._value_before(pos)
            if got is None:
                break
            content = self.data[max(got[0] + 1, got[1] - JOIN_REACH) : got[1]]
            out.append(content)
            if not enumish(content):
                break
            pos = got[0]
        return out

    def is_key(self, close: int) -> bool:
        """Is the string closed by the quote at `close` a key?"""
        return self.data[close + 1 : close + 65].lstrip(_WS)[:1] == b":"

    def key_before(self, opening: int) -> str | None:
        """The key of the value whose string opens at `opening` (None: an array element, a bare document)."""
        d, floor = self.data, max(0, opening - 64)
        pos = opening - 1
        while pos >= floor and d[pos] in _WS:
            pos -= 1
        if pos < floor or d[pos] != 0x3A:  # ':'
            return None
        pos -= 1
        while pos >= floor and d[pos] in _WS:
            pos -= 1
        if pos < floor or d[pos] != _QUOTE:
            return None
        start = self._opening(pos, max(0, pos - 256))
        return None if start < 0 else self.decode(start + 1, pos).decode("utf-8", "replace")

    def opening_quote(self, piece: Piece) -> int:
        """The opening quote of a string that began before its window."""
        if piece.open >= 0:
            return piece.open
        return self.masked.rfind(b'"', 0, piece.lo)

    # -- decoding ----------------------------------------------------------------------

    def decode(self, lo: int, hi: int) -> bytes:
        """The JSON-unescaped bytes of raw [lo, hi) (escape-aligned, inside one string)."""
        raw = self.data[lo:hi]
        if b"\\" not in raw:
            return raw
        try:
            return orjson.loads(b'"' + raw + b'"').encode("utf-8", "surrogatepass")
        except orjson.JSONDecodeError:  # a surrogate pair cut at a window's edge
            return unescape(raw, json=True)

    def value_of(self, piece: Piece) -> bytes | None:
        """The whole decoded value of a string that may run past its window (None: too long)."""
        start = piece.open + 1
        if piece.open < 0:
            return None  # a value's opening quote is always in the window that pairs it with its key
        if piece.closed:
            return self.decode(start, piece.hi)
        close = self._closing(start, min(len(self.data), start + MAX_KEYED_VALUE + 1))
        return self.decode(start, close) if close >= start else None

    def _escape_start(self, pos: int, floor: int) -> int:
        """`pos`, moved back to the start of an escape sequence that it would cut."""
        d = self.data
        for s in range(pos - 1, max(floor, pos - 6) - 1, -1):
            if d[s] != _BACKSLASH:
                continue
            if escaped(d, s):  # the second backslash of `\\`: that escape ends at s + 1
                return pos
            return s if s + (6 if d[s + 1] == 0x75 else 2) > pos else pos
        return pos

    # -- locations and heads ---------------------------------------------------------

    def location(self, piece: Piece) -> str:
        """The JSON path of a value string (`keys` for a key), computed on a finding only."""
        if piece.key:
            return KEYS
        paths = self._literal_paths()
        index = self._quotes_before(self.opening_quote(piece)) // 2
        if paths is None or index >= len(paths):
            return self.prefix.rstrip(":")
        return paths[index]

    def _quotes_before(self, pos: int) -> int:
        """Delimiting quotes before `pos`, counted on from the last query: a part's locations,
        asked in body order, cost one sweep, not one count from the start each."""
        at, n = self._cursor
        m = self.masked
        n = n + m.count(b'"', at, pos) if pos >= at else n - m.count(b'"', pos, at)
        self._cursor = (pos, n)
        return n

    def _literal_paths(self) -> list[str] | None:
        if self._paths is None and not self._path_error:
            paths = literal_paths(orjson.loads(self.data), self.prefix)
            if len(paths) == self.masked.count(b'"') // 2:
                self._paths = paths
            else:  # duplicate keys: orjson kept one, so document order and literals disagree
                self._path_error = True
        return self._paths

    def heads(self, n: int, limit: int) -> list[tuple[bytes, Callable[[], str], bool]]:
        """The first `n` decoded bytes of up to `limit` non-empty strings (split probes), with locations
        and whether that is the whole string."""
        parts = self.masked.split(b'"', 2 * limit + 1)  # odd parts are string contents
        sums = list(accumulate(map(len, parts), initial=0))
        out: list[tuple[bytes, Callable[[], str], bool]] = []
        for i in range(1, len(parts) - 1, 2):
            start = sums[i] + i  # i quotes precede part i
            close = start + len(parts[i])
            if close > start:
                piece = Piece(start, close, start - 1, True)
                head_end = self._escape_start(min(close, start + n), start)
                head = self.decode(start, head_end)
                out.append((head[:n], _bind(self.location, piece), head_end == close and len(head) <= n))
        return out[:limit]


def _run_start(data: bytes, pos: int) -> int:
    """`pos`, moved back before a run of backslashes ending there (masking can start there)."""
    while pos > 0 and data[pos - 1] == _BACKSLASH:
        pos -= 1
    return pos


def escaped(data: bytes, q: int) -> bool:
    """Is the byte at `q` escaped (an odd run of backslashes before it)?"""
    k = 0
    while q - k - 1 >= 0 and data[q - k - 1] == _BACKSLASH:
        k += 1
    return k % 2 == 1


def _mask(seg: bytes) -> bytes:
    """Escaped backslashes and quotes blanked (same length): every `"` left delimits a string."""
    if b"\\" not in seg:
        return seg
    return seg.replace(b"\\\\", b"\0\0").replace(b'\\"', b"\0\0")


def _is_string(part: bytes) -> bool:
    """Bytes that structure cannot hold (the content of a key or a value)."""
    return bool(part.translate(None, _STRUCTURE))


def _bind(fn: Callable[[Piece], str], piece: Piece) -> Callable[[], str]:
    return lambda: fn(piece)


SEPARATOR = Part([b"\\\0"], ["-"])  # between windows: every value class and escape stops at it


def local_views(raw: RawJson, locals_: list[Local]) -> tuple[View, View]:
    """The windows' decoded values then keys, and the values without enum-like ones (see
    engine.py); all windows in one view, for one matcher pass. The separator between windows is
    a backslash (no token, keyword value or database password holds one; so no match runs from
    one window into the next) and a NUL (so no escape sequence starts there). The last window
    ends the view, as the last value ended the full view (patterns ending in `$`)."""
    view, alt = View(), View()
    for n, local in enumerate(locals_):
        if n:
            view.add(SEPARATOR)
            alt.add(SEPARATOR)
        pieces = [p for p in local.values if p.hi > p.lo]
        values = [raw.decode(p.lo, p.hi) for p in pieces]
        view.add(Part(values, _locations(raw, pieces)))
        keys = [raw.decode(p.lo, p.hi) for p in local.keys if p.hi > p.lo]
        if keys:
            view.add(SEPARATOR)  # a key is no continuation of the value before it
            view.add(Part(keys, [KEYS] * len(keys)))
        kept = [i for i, v in enumerate(values) if not enumish(v)]
        if len(kept) < len(values):
            alt.add(Part([values[i] for i in kept], _locations(raw, [pieces[i] for i in kept])))
    return view, alt


def _locations(raw: RawJson, pieces: list[Piece]) -> Callable[[], list[str]]:
    return lambda: [raw.location(p) for p in pieces]


def enumish(value: bytes) -> bool:
    """Short lower-case words ("text", "user", "tool_result"): a split token is judged without them."""
    if value.isascii():
        return len(value) <= 24 and value.islower() and value.replace(b"_", b"").isalpha()
    return len(value) <= 96 and _enumish_str(value.decode("utf-8", "replace"))


def _enumish_str(value: str) -> bool:
    return len(value) <= 24 and value.islower() and value.replace("_", "").isalpha()


def decoded_view(raw: RawJson, key_is_secret: Callable[[str], bool]
                 ) -> tuple[View, View, list[tuple[str, str]], list[tuple[bytes, str]]]:
    """The whole body decoded, as the engine saw every JSON body before the raw pass: every
    string value in document order, then the keys; the values without enum-like ones; the
    values under secret-ish keys; and the values that are bare secrets (scanner/bare.py), with
    their locations. Used for bodies with `\\/` escapes, and as the reference the raw pass is
    tested against."""
    doc = orjson.loads(raw.data)
    values, keys, keyed = json_values(doc, key_is_secret)
    paths: list[list[str]] = []

    def lazy_paths() -> list[str]:
        if not paths:
            paths.append(json_paths(doc, raw.prefix))
        return paths[0]

    view, alt = View(), View()
    view.add(Part(values, lazy_paths))
    if keys:
        view.add(SEPARATOR)  # keys after the values, never joined to the last one
        view.add(Part(keys, [KEYS] * len(keys)))
    kept = [i for i, v in enumerate(values) if not _enumish_str(v)]
    if len(kept) < len(values):
        alt.add(Part([values[i] for i in kept], lambda: [lazy_paths()[i] for i in kept]))
    bare_values = [(v, lazy_paths()[i]) for i, v in json_candidates(doc, key_is_secret)]
    return view, alt, [(v, "") for v in keyed], bare_values


def literal_paths(doc: object, prefix: str) -> list[str]:
    """The location of every string literal (keys as `keys`), in document order."""
    paths: list[str] = []
    stack: list[tuple[object, str]] = [(doc, "$")]
    while stack:
        node, path = stack.pop()
        if node is _KEY_MARK:
            paths.append(KEYS)
        elif isinstance(node, str):
            paths.append(prefix + path)
        elif isinstance(node, dict):
            for k, v in reversed(list(node.items())):
                stack.append((v, f"{path}.{safe_name(k)}"))
                stack.append((_KEY_MARK, ""))
        elif isinstance(node, list):
            for i in range(len(node) - 1, -1, -1):
                stack.append((node[i], f"{path}[{i}]"))
    return paths
