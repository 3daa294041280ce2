"""Request bodies: Content-Encoding (bounded, streamed), media types, multipart, forms.

Every decoder stops at a hard output limit and a ratio limit, so a decompression
bomb costs at most `max_decoded` bytes of work and ends as a definite error.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import brotli
import zstandard

from scanner.errors import BodyError

CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_decoded: int  # bytes after all Content-Encodings
    max_ratio: int  # decoded / encoded


def budget(encoded: int, limits: Limits) -> int:
    """Bytes a body of `encoded` bytes may decode to: the hard limit, and the ratio limit."""
    return min(limits.max_decoded, max(encoded, 1) * limits.max_ratio)


def _bomb(coding: str, limit: int) -> BodyError:
    return BodyError("decompression-bomb", f"{coding}: output exceeds {limit} bytes")


def _zlib(data: bytes, wbits: int, limit: int, coding: str) -> bytes:
    out = bytearray()
    while True:  # concatenated gzip members are legal
        d = zlib.decompressobj(wbits)
        chunk = d.decompress(data, limit + 1 - len(out))
        out += chunk
        while d.unconsumed_tail and len(out) <= limit:
            out += d.decompress(d.unconsumed_tail, limit + 1 - len(out))
        if len(out) > limit:
            raise _bomb(coding, limit)
        if not d.eof:
            raise BodyError("undecodable-body", f"{coding}: truncated stream")
        data = d.unused_data
        if not data or wbits != 31:
            return bytes(out)


def _deflate(data: bytes, limit: int) -> bytes:
    # RFC 9110 "deflate" is zlib-wrapped, but raw deflate is common in the wild.
    try:
        return _zlib(data, 15, limit, "deflate")
    except zlib.error:
        return _zlib(data, -15, limit, "deflate")


def _brotli(data: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    out = bytearray(d.process(data, output_buffer_limit=CHUNK))
    while not d.can_accept_more_data() or (not d.is_finished() and len(out) <= limit):
        more = d.process(b"", output_buffer_limit=CHUNK)
        if not more:
            break
        out += more
        if len(out) > limit:
            raise _bomb("br", limit)
    if len(out) > limit:
        raise _bomb("br", limit)
    if not d.is_finished():
        raise BodyError("undecodable-body", "br: truncated stream")
    return bytes(out)


def _zstd(data: bytes, limit: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    out = bytearray()
    while chunk := reader.read(CHUNK):
        out += chunk
        if len(out) > limit:
            raise _bomb("zstd", limit)
    return bytes(out)


_DECODERS = {
    "gzip": lambda d, n: _zlib(d, 31, n, "gzip"),
    "x-gzip": lambda d, n: _zlib(d, 31, n, "gzip"),
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


def decode_content(body: bytes, content_encoding: str, limits: Limits) -> bytes:
    """Undo every Content-Encoding (last applied first). Raises BodyError."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        decoder = _DECODERS.get(coding)
        if decoder is None:
            raise BodyError("unsupported-content-encoding", f"cannot decode {coding!r}")
        try:
            body = decoder(body, budget(len(body), limits))
        except BodyError:
            raise
        except (zlib.error, brotli.error, zstandard.ZstdError, EOFError, ValueError) as exc:
            raise BodyError("undecodable-body", f"{coding}: {type(exc).__name__}") from None
    return body


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = content_type.partition(";")
    params = {}
    for item in rest.split(";"):
        key, eq, value = item.partition("=")
        if eq:
            params[key.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), params


def is_json(kind: str) -> bool:
    return kind == "application/json" or kind.endswith("+json") or kind == "text/json"


def looks_like_json(body: bytes) -> bool:
    head = body[:64].lstrip()
    return head[:1] in (b"{", b"[")


def form_fields(body: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for pair in body.split(b"&"):
        if not pair:
            continue
        key, _, value = pair.partition(b"=")
        out.append((unquote_to_bytes(key.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))))
    return out


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    content_type: str
    body: bytes


def multipart_parts(body: bytes, boundary: str) -> list[Part]:
    """RFC 7578 parts; quoted-printable / base64 transfer encodings undone. Raises BodyError."""
    if not boundary or len(boundary) > 200:
        raise BodyError("malformed-multipart", "missing or invalid boundary")
    delim = b"--" + boundary.encode("latin-1")
    pieces = body.split(delim)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise BodyError("malformed-multipart", "no closing boundary")
    return [_part(p) for p in pieces[1:-1]]


def _part(raw: bytes) -> Part:
    raw = raw[2:] if raw.startswith(b"\r\n") else raw.lstrip(b"\n")
    head, sep, content = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, content = raw.partition(b"\n\n")
    if not sep:
        raise BodyError("malformed-multipart", "part without a header block")
    headers = {}
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    content = content[:-2] if content.endswith(b"\r\n") else content.removesuffix(b"\n")
    _, disp = media_type(headers.get("content-disposition", ""))
    name = disp.get("name") or disp.get("filename") or "?"
    return Part(name, headers.get("content-type", ""), _transfer_decode(content, headers.get("content-transfer-encoding", "")))


def _transfer_decode(content: bytes, cte: str) -> bytes:
    cte = cte.strip().lower()
    import binascii

    try:
        if cte == "base64":
            return binascii.a2b_base64(content)
        if cte == "quoted-printable":
            return binascii.a2b_qp(content)
    except binascii.Error as exc:
        raise BodyError("malformed-multipart", f"part transfer encoding: {exc}") from None
    return content
