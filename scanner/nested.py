"""The generic nested layer: long hex / base64 / base32 runs that hold text or a compressed stream.

The anchors cover one layer over a token (and base64 of base64); a second or third layer
(hex of base64, base64 of zlib, base32 of base64, base64 of `%XX`, reversed base64...) leaves
nothing of the token to match, and an anchor per combination would be ~97,000 more literals.
Instead, for every run of MIN_RUN or more encoding characters (runs()):

- both ends of the run are decoded (hex, base32 or base64; forwards, and backwards for a
  reversed encoding), a few bytes for runs on one line judged in bulk (worth_peeling), and
  the run is kept only when that can start UTF-8 text without control bytes or a gzip / zlib /
  zstd stream: digests, ids and images (random bytes) stop there;
- then the whole run is decoded (and inflated) by peel(), and the engine scans the result like
  any decoded window: its anchors find the next layer, and this layer peels one more
  (engine.Engine._peel holds the depth, byte and count bounds).

Nothing here uses a backtracking regex: a hyperscan pure repeat, translates and substring
searches, and C decoders (binascii, zlib, zstandard) on bounded input.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
import zlib
from dataclasses import dataclass

import hyperscan
import zstandard

from scanner.decoders import _URL_TO_STD, _pad, _run_end

MIN_RUN = 48  # shorter runs are ids and digests (a git SHA is 40), and one layer's anchors cover them
DEPTH = 3  # generic layers peeled (a text-holding run deeper than this: `nesting-too-deep`)
SAMPLE = 512  # run characters decoded to classify a run
RATIO = 200  # a stream inflated past this many times its size is a bomb (as a Content-Encoding body)


def _table(chars: bytes) -> bytes:
    table = bytearray(256)
    for c in chars:
        table[c] = 1
    return bytes(table)


_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_RUN_CHARS = _B64 + b"="
_IN_LINE = _table(_RUN_CHARS)
_IN_RUN = _table(_RUN_CHARS + b"\r\n\\")  # a run goes on over line breaks, raw or JSON-escaped (wrapped)
_MARK = bytes(0x61 if c in _RUN_CHARS else 0x20 for c in range(256))  # run character -> "a", else " "
_KEY = b"a" * MIN_RUN
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_B32_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_LOWER = _B32_UPPER.lower()
_CONTROL = bytes(c for c in range(32) if c not in b"\t\n\r") + b"\x7f"
_GZIP = b"\x1f\x8b\x08"
_ZSTD = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True, slots=True)
class Layer:
    names: tuple[str, ...]  # transforms, outermost first: ("reversed", "base64", "gzip")
    data: bytes
    capped: bool  # output stopped at the byte limit: more was there
    stream: bool = False  # inflated (its bytes count against the stream allowance, not the window budget)


def runs(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every run of MIN_RUN or more run characters, taken on over the line breaks
    that follow it (a wrapped run is one).

    Hyperscan finds the first MIN_RUN run characters in a row cheaply (0.1 ms per MB: a pure
    repeat; one with a class before or after it, to report each run once, cost 1.6-6 ms), and
    stops there; the run is read to its end and the search goes on after it. Past RESTARTS runs
    the rest of the buffer is done with one translate and substring searches (0.5 ms per MB)."""
    out: list[tuple[int, int]] = []
    view = memoryview(data)
    pos = 0
    while len(out) < RESTARTS:
        end = _FIRST.first(view[pos:]) if pos else _FIRST.first(data)
        if end < 0:
            return out
        pos = _add_run(data, out, pos + end - MIN_RUN, pos + end)
    return out + _marked_runs(data, pos)


def _add_run(data: bytes, out: list[tuple[int, int]], start: int, stop: int, marks: bytes | None = None) -> int:
    """Records the run whose first MIN_RUN characters are data[start:stop]; returns its end."""
    if marks is not None:
        stop = marks.find(b" ", stop)
        stop = len(data) if stop < 0 else stop
    elif stop < len(data) and data[stop] not in _BREAK_START:
        stop = _run_end(data, stop, len(data), _IN_LINE, 64)
    if data[stop : stop + 1] in (b"\r", b"\n") or data[stop : stop + 2] in (b"\\r", b"\\n"):
        stop = _run_end(data, stop, len(data), _IN_RUN)
        while stop and data[stop - 1] == 0x5C:  # a run wrapped up to `\"`: the quote's escape is no part of it
            stop -= 1
    if start and data[start - 1] == 0x5C:  # `\n` (JSON) then the run: the escape's letter is no part of it
        start += 1
    out.append((start, stop))
    return stop


def _marked_runs(data: bytes, pos: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    marks = data.translate(_MARK)
    size = len(data)
    pos = marks.find(_KEY, pos)
    while pos >= 0:  # inlined for the usual run (one line, no escape before it): lockfiles hold thousands
        stop = marks.find(b" ", pos + MIN_RUN)
        stop = size if stop < 0 else stop
        if (stop < size and data[stop] in _BREAK_START) or (pos and data[pos - 1] == 0x5C):
            stop = _add_run(data, out, pos, stop, marks)
        else:
            out.append((pos, stop))
        pos = marks.find(_KEY, stop)
    return out


class _First:
    """A hyperscan database of one pure repeat, scanned until its first match (scratch per thread)."""

    def __init__(self) -> None:
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=[rb"[A-Za-z0-9+/_\-=]{%d}" % MIN_RUN], ids=[0], elements=1, flags=[0])
        self._local = threading.local()

    def first(self, data: bytes | memoryview) -> int:
        """End offset of the first match in `data`, or -1."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        got: list[int] = []

        def on_match(_id: int, _start: int, end: int, _flags: int, _ctx: object) -> bool:
            got.append(end)
            return True  # stop: the rest of this run is read by translate

        try:
            self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        except hyperscan.ScanTerminated:
            pass
        return got[0] if got else -1


RESTARTS = 16
_FIRST = _First()


_BREAK_START = frozenset(b"\r\n\\")


def _clean(run: bytes) -> bytes:
    if b"\\" in run:
        run = run.replace(b"\\r", b"").replace(b"\\n", b"")
    return run.translate(None, b"=\r\n\\")


def _decoders(sample: bytes) -> list[tuple[str, object]]:
    """The encodings `sample` (run characters) can be: hex alone when it is all hex digits."""
    if not sample.translate(None, _HEX_DIGITS):
        return [("hex", _hex)]
    out: list[tuple[str, object]] = []
    if not sample.translate(None, _B32_UPPER) or not sample.translate(None, _B32_LOWER):
        out.append(("base32", _b32))
    out.append(("base64", _b64))
    return out


def _hex(text: bytes) -> bytes:
    return binascii.a2b_hex(text[: len(text) // 2 * 2])


def _b32(text: bytes) -> bytes:
    return base64.b32decode(_pad(text.upper(), 8))


def _b64(text: bytes) -> bytes:
    return binascii.a2b_base64(_pad(text, 4).translate(_URL_TO_STD))


def _stream_kind(head: bytes) -> str | None:
    if head.startswith(_GZIP):
        return "gzip"
    if head.startswith(_ZSTD):
        return "zstd"
    if len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return None


QUICK = 4096  # runs up to this long on one line are first judged in bulk by the bytes at their two ends
_PROBE = 24  # characters decoded at each end: 18 bytes of base64, 12 of hex
# two bytes that can start a stream: gzip, zstd, and every zlib header (deflate, window <= 32 KB, check bits)
_MAGIC = frozenset([b"\x1f\x8b", b"\x28\xb5"] + [bytes((a, b)) for a in range(8, 256, 16) if a >> 4 <= 7
                                                  for b in range(256) if (a << 8 | b) % 31 == 0])


def worth_peeling(data: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The runs left after dropping, in bulk, the ones on one line (no break, no escape) whose two
    ends decode to bytes that can start neither text nor a stream: digests, ids, random bytes.
    A lockfile holds thousands (a few microseconds each here, against 15 one by one)."""
    keep: list[tuple[int, int]] = []
    groups: dict[str, tuple[list[tuple[int, int]], list[bytes]]] = {"hex": ([], []), "base64": ([], [])}
    for span in spans:
        run = data[span[0] : span[1]]
        rest = run.translate(None, _HEX_DIGITS + b"=")  # (int membership and translate: `b"x" in run` costs 0.3 us)
        if len(run) > QUICK or rest.translate(None, _B64):
            keep.append(span)  # long, or line breaks or escapes in it: the full path
            continue
        if 0x3D in run:
            run = run.replace(b"=", b"")
        if not rest:
            kind = "hex"
        elif rest.translate(None, _B32_UPPER) and rest.translate(None, _B32_LOWER):
            kind = "base64"
        else:
            keep.append(span)  # base32-shaped: rare, the full path
            continue
        group = groups[kind]
        group[0].append(span)
        group[1].append(run[:_PROBE] + run[-_PROBE:][::-1])
    for kind, (group_spans, probes) in groups.items():
        if not group_spans:
            continue
        joined = b"".join(probes)
        decoded = binascii.a2b_hex(joined) if kind == "hex" else binascii.a2b_base64(joined.translate(_URL_TO_STD))
        size = len(decoded) // len(group_spans) // 2  # bytes per end
        classes = decoded.translate(_CLASS)
        for i, span in enumerate(group_spans):
            at = 2 * i * size
            if _may_start(decoded, classes, at, size) or _may_start(decoded, classes, at + size, size):
                keep.append(span)
    keep.sort()
    return keep


# Bytes by class: "c" control or never in UTF-8, "." ASCII, "h" continuation, "l" lead of a sequence
_CLASS = bytes(0x63 if c in _CONTROL or c in (0xC0, 0xC1) or c >= 0xF5 else 0x2E if c < 0x80 else 0x68 if c < 0xC0 else 0x6C
               for c in range(256))


def _may_start(decoded: bytes, classes: bytes, at: int, size: int) -> bool:
    """decoded[at:at + size] can start a stream, or text: no control byte, and no byte sequence that
    UTF-8 never has (a continuation after ASCII, a lead not followed by one); the full path is exact."""
    if decoded[at : at + 2] in _MAGIC:
        return True
    seq = classes[at : at + size]
    return 0x63 not in seq and b".h" not in seq and b"l." not in seq and b"ll" not in seq


def _text(head: bytes, shortest: int = 16) -> bool:
    """UTF-8 text without control bytes (a multi-byte character cut at the end is allowed)."""
    if len(head) < shortest or len(head.translate(None, _CONTROL)) != len(head):
        return False
    for cut in range(4):
        try:
            head[: len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def peel(data: bytes, start: int, end: int, limit: int, stream_left: int = 0) -> Layer | None:
    """The run data[start:end] decoded, when it holds text or a compressed stream; None when it
    holds neither (random bytes) or is no encoding. At most `limit` bytes are produced, or for a
    compressed stream `stream_left` and RATIO times the compressed size (a bomb stops there).

    Line breaks join a wrapped run; a run can also take in a word on the line before or after
    it (`dump:\\n<hex>\\ndone`): the parts after the first and before the last break are tried too."""
    for lo, hi in _spans(data, start, end):
        if hi - lo >= MIN_RUN:
            layer = _peel(data, lo, hi, limit, stream_left)
            if layer is not None:
                return layer
    return None


def _spans(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """The run, and the run without its first line, its last line, or both (breaks looked for
    in the first and last KB only: bounded)."""
    out = [(start, end)]
    head = data[start : min(end, start + 1024)]
    first = min(_breaks(head, head.find), default=None)
    if first is not None:
        out.append((start + first[1], end))
    tail_at = max(start, end - 1024)
    last = max(_breaks(data[tail_at:end], data[tail_at:end].rfind), default=None)
    if last is not None:
        out.append((start, tail_at + last[0]))
        if first is not None:
            out.append((start + first[1], tail_at + last[0]))
    return out


def _breaks(chunk: bytes, find) -> list[tuple[int, int]]:  # noqa: ANN001 (bytes.find or bytes.rfind)
    """(start, end) of the line break `find` meets first, raw or JSON-escaped."""
    out = []
    for brk in (b"\n", b"\\n"):
        at = find(brk)
        if at >= 0:
            out.append((at, at + len(brk)))
    return out


def _peel(data: bytes, start: int, end: int, limit: int, stream_left: int) -> Layer | None:
    head = _clean(data[start : min(end, start + SAMPLE + 128)])[:SAMPLE]
    head = head[: len(head) // 8 * 8] or head
    tail = _clean(data[max(start, end - SAMPLE - 128) : end])[::-1]
    tail = tail[: len(tail) // 8 * 8] or tail
    for reversed_, sample in ((False, head), (True, tail)):
        for name, decode in _decoders(sample):
            try:
                probe = decode(sample)  # type: ignore[operator]
            except (binascii.Error, ValueError):
                continue
            stream = _stream_kind(probe)
            if stream is None and not _text(probe):
                continue
            whole = _clean(data[start:end])
            try:
                decoded = decode(whole[::-1] if reversed_ else whole)  # type: ignore[operator]
            except (binascii.Error, ValueError):
                continue
            names = (("reversed",) if reversed_ else ()) + (name,)
            if stream is None:
                return Layer(names, decoded[:limit], len(decoded) > limit)
            out, capped = inflate(decoded, stream, min(stream_left, RATIO * len(decoded)))
            return Layer(names + (stream,), out, capped, stream=True)
    return None


def inflate(data: bytes, stream: str, limit: int) -> tuple[bytes, bool]:
    """Every member of the stream (`cat a.gz b.gz`), at most `limit` bytes; a stream cut short
    gives what it holds up to the cut. (output, whether the limit stopped it)"""
    if stream == "zstd":
        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
                out = reader.read(limit + 1)
        except zstandard.ZstdError:
            return b"", False
        return out[:limit], len(out) > limit
    out = b""
    wbits = 16 + zlib.MAX_WBITS if stream == "gzip" else zlib.MAX_WBITS
    while data and len(out) <= limit:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error:
            break
        if inflater.unconsumed_tail:
            return out[:limit], True
        data = inflater.unused_data
        if not data.startswith(_GZIP if stream == "gzip" else b"x"):
            break
    return out[:limit], len(out) > limit
