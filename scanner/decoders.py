"""Decode a bounded window around a hit.

Every function takes the buffer, the hit's span and a window radius, and returns
(window_start, window_end, decoded bytes) or None. Work is bounded by the radius,
never by the size of the surrounding data (a hit inside a 10 MB base64 image
decodes a few KB around it). Nothing here uses a backtracking regex.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from urllib.parse import unquote_to_bytes

_B64_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
_B32_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcdefghijklmnopqrstuvwxyz"
_HEX_ALPHA = b"0123456789abcdefABCDEF"
_WRAP = b"\r\n"  # MIME/PEM line breaks inside a base64 run


def _membership(alphabet: bytes) -> bytes:
    """translate() table: alphabet bytes -> 1, everything else -> 0."""
    table = bytearray(256)
    for b in alphabet:
        table[b] = 1
    return bytes(table)


_IN_B64 = _membership(_B64_ALPHA + _WRAP)
_IN_B32 = _membership(_B32_ALPHA + _WRAP)
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_GZIP_MAGIC = b"\x1f\x8b\x08"  # base64 `H4sI` at a group boundary: where `gzip | base64` starts


def _run(buf: bytes, start: int, end: int, radius: int, table: bytes) -> tuple[int, int]:
    """Bounds of the run of alphabet bytes around [start, end), at most `radius` each way."""
    lo = max(0, start - radius)
    hi = min(len(buf), end + radius)
    marks = buf[lo:hi].translate(table)
    left = marks.rfind(b"\x00", 0, start - lo) + 1
    right = marks.find(b"\x00", end - lo)
    return lo + left, hi if right < 0 else lo + right


def _strip(data: bytes, chars: bytes) -> bytes:
    return data.translate(None, chars)


def group_decode(buf: bytes, start: int, end: int, phase: int, radius: int, family: str) -> tuple[int, int, bytes] | None:
    """base64 / base64url / base32: align to the group boundary the hit implies, then decode."""
    is32 = family == "base32"
    group = 8 if is32 else 4
    lo, hi = _run(buf, start, end, radius, _IN_B32 if is32 else _IN_B64)
    left = _strip(buf[lo:start], _WRAP)
    drop = (len(left) - phase) % group
    body = _pad(left[drop:] + _strip(buf[start:hi], _WRAP + b"="), group)
    try:
        if is32:
            return lo, hi, base64.b32decode(body.upper())
        return lo, hi, binascii.a2b_base64(body.translate(_URL_TO_STD))
    except (binascii.Error, ValueError):
        return None


def gzip_base64_decode(buf: bytes, start: int, reach: int, max_out: int) -> tuple[int, int, bytes] | None:
    """`gzip | base64` (either alphabet): the run that starts at the gzip header's encoding, inflated.

    The compressed stream holds nothing a pattern can match, so the run is decoded from the
    header on, every gzip member in it (`cat a.gz b.gz`). Bounded: at most `reach` characters
    are read and `max_out` bytes inflated; a stream cut short (by the bound or on purpose)
    still gives what it holds up to the cut."""
    hi = _run_end(buf, start, min(len(buf), start + reach), _IN_B64)
    try:
        raw = binascii.a2b_base64(_pad(_strip(buf[start:hi], _WRAP), 4).translate(_URL_TO_STD))
    except (binascii.Error, ValueError):
        return None
    out = b""
    while raw.startswith(_GZIP_MAGIC) and len(out) < max_out:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(raw, max_out - len(out))
        except zlib.error:
            break
        raw = inflater.unused_data
    return (start, hi, out) if out else None


def _run_end(buf: bytes, start: int, limit: int, table: bytes, step: int = 1024) -> int:
    """End of the run of alphabet bytes from `start` (at most `limit`), read a step at a time:
    a short run costs a short read, however far `limit` is."""
    pos = start
    while pos < limit:
        marks = buf[pos : min(limit, pos + step)].translate(table)
        stop = marks.find(b"\x00")
        if stop >= 0:
            return pos + stop
        pos += len(marks)
        step *= 2
    return limit


def _pad(body: bytes, group: int) -> bytes:
    """Drop inner padding, then re-pad the tail (a partial last group still decodes)."""
    body = body.replace(b"=", b"")
    full = len(body) // group * group
    rest = len(body) - full
    valid_tail = {4: (2, 3), 8: (2, 4, 5, 7)}[group]
    if rest and rest in valid_tail:
        return body + b"=" * (group - rest)
    return body[:full]


def hex_decode(buf: bytes, start: int, end: int, separator: str, radius: int) -> tuple[int, int, bytes] | None:
    sep = separator.encode()
    lo, hi = _run(buf, start, end, radius, _membership(_HEX_ALPHA + sep))
    if sep == b"\\x":
        # the run for `\x67\x68` is built from `\`, `x` and hex digits; the hit starts at a `\`
        left, right = buf[lo:start], buf[start:hi]
        left = left[left.find(b"\\") :] if b"\\" in left else b""
        digits = (left + right).replace(b"\\x", b"")
    else:
        left = _strip(buf[lo:start], sep)
        left = left[len(left) % 2 :]
        digits = left + _strip(buf[start:hi], sep)
    digits = digits.translate(None, bytes(c for c in range(256) if c not in _HEX_ALPHA))
    digits = digits[: len(digits) // 2 * 2]
    try:
        return lo, hi, bytes.fromhex(digits.decode("ascii"))
    except ValueError:
        return None


def percent_decode(buf: bytes, start: int, end: int, radius: int) -> tuple[int, int, bytes]:
    lo, hi = max(0, start - radius), min(len(buf), end + radius)
    return lo, hi, unquote_to_bytes(buf[lo:hi])


def escape_decode(buf: bytes, start: int, end: int, radius: int) -> tuple[int, int, bytes]:
    """`\\uXXXX` and `\\xXX` escapes (JSON, JS, Python source) -> the characters."""
    lo, hi = max(0, start - radius), min(len(buf), end + radius)
    return lo, hi, unescape(buf[lo:hi])


_JSON_ESCAPES = {0x22: b'"', 0x5C: b"\\", 0x2F: b"/", 0x62: b"\b", 0x66: b"\f", 0x6E: b"\n", 0x72: b"\r", 0x74: b"\t"}


def unescape(data: bytes, json: bool = False) -> bytes:
    """`\\uXXXX` and `\\xXX` escapes (JS, Python source) -> the characters. `json`: JSON string
    escapes instead (`\\uXXXX` and `\\n \\" ...`, no `\\x`), lone surrogates kept (scanner/rawjson.py)."""
    simple = _JSON_ESCAPES if json else {}
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        j = data.find(b"\\", i)
        if j < 0 or j + 1 >= n:
            out += data[i:]
            break
        out += data[i:j]
        kind = data[j + 1]
        width = 4 if kind == 0x75 else 2 if kind == 0x78 and not json else 0  # \u, \x
        code = data[j + 2 : j + 2 + width]
        if width and len(code) == width and all(c in _HEX_ALPHA for c in code):
            out += chr(int(code, 16)).encode("utf-8", "surrogatepass")
            i = j + 2 + width
        elif kind in simple:
            out += simple[kind]
            i = j + 2
        else:
            out += data[j : j + 1]
            i = j + 1
    return bytes(out)


def reverse_window(buf: bytes, start: int, end: int, radius: int) -> tuple[int, int, bytes]:
    lo, hi = max(0, start - radius), min(len(buf), end + radius)
    return lo, hi, buf[lo:hi][::-1]
