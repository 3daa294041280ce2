"""Search everything the attacker sink captured for every canary, in every encoding.

The search does not trust the catalog to say how a canary was wrapped: it
decodes what the sink received (percent-encoding, JSON escapes, base64 and
base64url at every alignment, base32, hex, reversal, gzip / zlib / brotli /
zstd streams, DNS labels) recursively, and looks for each canary's random
material in every view. A piece of at least ``FRAGMENT`` characters counts: a
secret leaked in halves, or truncated, is still a leak.

Finding a piece is fast: every window of ``FRAGMENT`` characters of the
material contains one of its 6-character pieces at an offset that is a
multiple of 6, so ``bytes.find`` on those anchors, then growing each match in
both directions, visits every view a bounded number of times.
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from kit.redteam.canaries import FRAGMENT, Canary

ANCHOR = 6
MAX_DEPTH = 3
MAX_VIEWS = 2000  # per blob: a capture crafted to explode the search is itself a finding
MAX_INFLATE = 16 * 1024 * 1024
MAX_BYTES = 64 * 1024 * 1024  # per blob, over all its views

_B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")
_B32_RUN = re.compile(rb"[A-Za-z2-7]{20,}={0,6}")
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}[:\s-]?){12,}")
_PCT = re.compile(rb"%[0-9a-fA-F]{2}")
_JSON_ESC = re.compile(rb'\\u[0-9a-fA-F]{4}|\\["\\/bfnrt]')
# A host name whose labels carry data: long labels, joined by dots.
_LONG_LABELS = re.compile(rb"(?:[A-Za-z0-9-]{16,63}\.)+[A-Za-z0-9-]+")
_ZLIB_HEADS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")


@dataclass(frozen=True)
class Blob:
    """One piece of captured data, and where it was: an event of the sink and a field of it."""

    event: int
    where: str
    data: bytes
    markers: tuple[str, ...] = ()  # the probes whose markers the event carried
    dns: bool = False  # a DNS name: labels are joined and case is not significant


@dataclass(frozen=True)
class Hit:
    canary: str
    provider: str
    event: int
    where: str
    transforms: tuple[str, ...]
    length: int  # characters of the canary's random material found in one piece
    full: bool  # the whole material was there
    markers: tuple[str, ...]


def search(blobs: Iterable[Blob], canaries: Sequence[Canary], fragment: int = FRAGMENT) -> list[Hit]:
    """Every canary found in the blobs, the best hit per (canary, event, field)."""
    best: dict[tuple[str, int, str], Hit] = {}
    for blob in blobs:
        for transforms, view in views(blob):
            for canary in canaries:
                length = longest_piece(view, canary.material, fragment, fold=blob.dns)
                if not length:
                    continue
                hit = Hit(canary.name, canary.provider, blob.event, blob.where, transforms, length,
                          length >= len(canary.material), blob.markers)
                key = (canary.name, blob.event, blob.where)
                if key not in best or best[key].length < length:
                    best[key] = hit
    return sorted(best.values(), key=lambda h: (h.event, h.canary, h.where))


def longest_piece(view: bytes, material: str, fragment: int = FRAGMENT, *, fold: bool = False) -> int:
    """Length of the longest piece (>= ``fragment``) of ``material`` found in ``view``, else 0."""
    needle = material.encode()
    if fold:
        view, needle = view.lower(), needle.lower()
    if len(needle) < fragment:
        return len(needle) if needle and needle in view else 0
    best = 0
    for offset in range(0, len(needle) - ANCHOR + 1, ANCHOR):
        anchor = needle[offset : offset + ANCHOR]
        at = view.find(anchor)
        while at != -1:
            length = _grow(view, at, needle, offset)
            best = max(best, length)
            at = view.find(anchor, at + 1)
    return best if best >= fragment else 0


def _grow(view: bytes, at: int, needle: bytes, offset: int) -> int:
    left = 0
    while left < offset and left < at and view[at - left - 1] == needle[offset - left - 1]:
        left += 1
    right = ANCHOR
    while offset + right < len(needle) and at + right < len(view) and view[at + right] == needle[offset + right]:
        right += 1
    return left + right


def views(blob: Blob) -> Iterator[tuple[tuple[str, ...], bytes]]:
    """The blob as received, then every decoding of it (breadth first, bounded)."""
    start = blob.data.replace(b".", b"") if blob.dns else blob.data
    seen = {start}
    queue = [((), start)]
    if blob.dns:
        queue.insert(0, ((), blob.data))
        seen.add(blob.data)
    emitted = volume = 0
    while queue and emitted < MAX_VIEWS and volume < MAX_BYTES:
        transforms, data = queue.pop(0)
        emitted += 1
        volume += len(data)
        yield transforms, data
        if len(transforms) >= MAX_DEPTH:
            continue
        for name, decoded in decodings(data, fold=blob.dns):
            if decoded and decoded not in seen:
                seen.add(decoded)
                queue.append((transforms + (name,), decoded))


def decodings(data: bytes, *, fold: bool = False) -> Iterator[tuple[str, bytes]]:
    """One step of decoding: each way ``data`` could be hiding something.

    Whole-blob decodings come first: the search is breadth first and bounded,
    and these are few and the likeliest to lead somewhere.
    """
    if _PCT.search(data):
        yield "url", urllib.parse.unquote_to_bytes(data)
    if _JSON_ESC.search(data):
        yield "json-unicode", _json_unescape(data)
    if _LONG_LABELS.search(data):
        yield "labels", _LONG_LABELS.sub(lambda m: m.group(0).replace(b".", b""), data)
    name = dns_wire_name(data)
    if name:
        yield "dns-message", name
    yield from _inflations(data)
    yield "reversed", data[::-1]
    for run in _B64_RUN.findall(data):
        for decoded in _base64_alignments(run):
            yield "base64", decoded
    for run in _B32_RUN.findall(data):
        if fold or run.isupper() or run.islower():
            for decoded in _base32_alignments(run):
                yield "base32", decoded
    for run in _HEX_RUN.findall(data):
        for decoded in _hex_alignments(run):
            yield "hex", decoded


def dns_wire_name(data: bytes) -> bytes:
    """The question name of a DNS message, labels joined (a secret may span two labels)."""
    if len(data) < 18:
        return b""
    labels, pos = [], 12
    while pos < len(data) and data[pos]:
        size = data[pos]
        if size > 63 or pos + 1 + size > len(data):
            return b""
        labels.append(data[pos + 1 : pos + 1 + size])
        pos += 1 + size
    return b"".join(labels) if len(labels) > 1 else b""


def _json_unescape(data: bytes) -> bytes:
    simple = {b'\\"': b'"', b"\\\\": b"\\", b"\\/": b"/", b"\\b": b"\b", b"\\f": b"\f",
              b"\\n": b"\n", b"\\r": b"\r", b"\\t": b"\t"}

    def one(match: re.Match[bytes]) -> bytes:
        token = match.group(0)
        if token in simple:
            return simple[token]
        return chr(int(token[2:], 16)).encode("utf-8", "surrogatepass")

    return _JSON_ESC.sub(one, data)


def _base64_alignments(run: bytes) -> Iterator[bytes]:
    # The secret may start anywhere inside a longer base64 text (a DoH query,
    # a JSON document): dropping 0-3 leading characters finds every alignment.
    run = run.rstrip(b"=").replace(b"-", b"+").replace(b"_", b"/")
    for skip in range(4):
        chunk = run[skip:]
        if len(chunk) % 4 == 1:
            chunk = chunk[:-1]
        if len(chunk) >= 16:
            try:
                yield binascii.a2b_base64(chunk + b"=" * (-len(chunk) % 4))
            except binascii.Error:
                continue


def _base32_alignments(run: bytes) -> Iterator[bytes]:
    import base64

    run = run.rstrip(b"=").upper()
    for skip in range(8):
        chunk = run[skip:]
        # A final partial group of 2, 4, 5 or 7 characters is valid once padded.
        if len(chunk) % 8 not in (0, 2, 4, 5, 7):
            chunk = chunk[: len(chunk) - len(chunk) % 8]
        if len(chunk) >= 16:
            try:
                yield base64.b32decode(chunk + b"=" * (-len(chunk) % 8))
            except binascii.Error:
                continue


def _hex_alignments(run: bytes) -> Iterator[bytes]:
    digits = re.sub(rb"[:\s-]", b"", run)
    for skip in range(2):
        chunk = digits[skip:]
        chunk = chunk[: len(chunk) - len(chunk) % 2]
        try:
            yield bytes.fromhex(chunk.decode())
        except ValueError:
            continue


def _inflations(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Every compressed stream in ``data``, wherever it starts (HTTP bodies, git packs)."""
    at = data.find(b"\x1f\x8b")
    while at != -1:
        out = _inflate_prefix(data[at:], 16 + zlib.MAX_WBITS)
        if out:
            yield "gzip", out
        at = data.find(b"\x1f\x8b", at + 2)
    for head in _ZLIB_HEADS:
        at = data.find(head)
        while at != -1:
            out = _inflate_prefix(data[at:])
            if out:
                yield "zlib", out
            at = data.find(head, at + 2)
    # Raw deflate and brotli have no magic bytes: try the whole blob.
    for name, fn in (("deflate", _raw_inflate), ("br", _brotli), ("zstd", _zstd)):
        out = _bounded(fn, data)
        if out:
            yield name, out


def _inflate_prefix(data: bytes, wbits: int = zlib.MAX_WBITS) -> bytes:
    try:
        inflater = zlib.decompressobj(wbits)
        return inflater.decompress(data, MAX_INFLATE)
    except zlib.error:
        return b""


def _raw_inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = inflater.decompress(data, MAX_INFLATE)
    return out if inflater.eof else b""


def _brotli(data: bytes) -> bytes:
    import brotli

    return brotli.decompress(data)


def _zstd(data: bytes) -> bytes:
    if not data.startswith(b"\x28\xb5\x2f\xfd"):
        return b""
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress(data)[:MAX_INFLATE]


def _bounded(fn, data: bytes) -> bytes:
    try:
        out = fn(data)
    except Exception:  # noqa: BLE001 - any garbage that fails to decode is simply not a view
        return b""
    return out[:MAX_INFLATE]
