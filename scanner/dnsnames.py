"""Names that reach a DNS resolver: host names, and the question names of DNS messages.

DNS tunnelling cuts an encoded secret into labels (at most 63 octets each), so the
secret is whole only with the dots taken out: `<b32 chunk>.<b32 chunk>.exfil.example`.
A host name (URL host, CONNECT target, Host header; the proxy checks that the TLS SNI
names the same host) and a name-shaped query value are therefore also scanned with
their labels joined. DNS over HTTPS carries whole DNS messages (RFC 8484: base64url
in `?dns=` or an `application/dns-message` body); their question names are parsed
(bounded, pointers followed a few hops at most) and scanned the same way.
"""

from __future__ import annotations

import binascii
import struct

DNS_MESSAGE_TYPES = ("application/dns-message", "application/dns-udpwireformat")
MAX_MESSAGE = 65535  # the largest DNS message
MAX_QUESTIONS = 16
MAX_NAME_BYTES = 1024  # RFC 1035 allows 255; a hostile message may say more, we read this much
MAX_POINTERS = 8
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")

_NAME_TABLE = bytes(  # translate(): label characters and dots -> 1, anything else -> 0
    1 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"-_.") else 0 for c in range(256)
)


def is_name(value: bytes) -> bool:
    """A dotted name of label characters (letters, digits, `-`, `_`), at least two dots."""
    return (value.count(b".") >= 2 and 5 <= len(value) <= 4096
            and not value.translate(_NAME_TABLE).count(b"\x00"))


def joined(name: bytes) -> bytes:
    """The labels without the dots between them."""
    return name.replace(b".", b"")


def host_of(authority: str) -> str:
    """The host of `host[:port]` / `user@host:port` / `[v6]:port`, case kept (base64 labels are
    case-sensitive; urlsplit's hostname folds case)."""
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.partition(":")[0]


def host_values(host: str) -> list[bytes]:
    """The host as written, and its labels joined when it has more than one."""
    raw = host.rstrip(".").encode("utf-8", "surrogateescape")
    if not raw:
        return []
    return [raw, joined(raw)] if b"." in raw else [raw]


def doh_query(value: bytes) -> bytes | None:
    """The DNS message of an RFC 8484 `?dns=` value (base64url, unpadded), or None."""
    if not value or len(value) > MAX_MESSAGE * 4 // 3 + 4:
        return None
    try:
        return binascii.a2b_base64(value.translate(_URL_TO_STD) + b"=" * (-len(value) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def question_names(message: bytes) -> list[bytes]:
    """The question names of a DNS message (dotted, as sent); [] when it is not one."""
    if len(message) < 12 or len(message) > MAX_MESSAGE:
        return []
    qdcount = struct.unpack_from("!H", message, 4)[0]
    names, pos = [], 12
    for _ in range(min(qdcount, MAX_QUESTIONS)):
        got = _name(message, pos)
        if got is None:
            break
        name, pos = got
        names.append(name)
        pos += 4  # QTYPE, QCLASS
    return names


def _name(message: bytes, pos: int) -> tuple[bytes, int] | None:
    """(name, offset after it in the question) or None; compression pointers followed a few hops."""
    labels: list[bytes] = []
    size, after, hops = 0, -1, 0
    while pos < len(message):
        length = message[pos]
        if length == 0:
            return b".".join(labels), (after if after >= 0 else pos + 1)
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(message) or hops >= MAX_POINTERS:
                return None
            if after < 0:
                after = pos + 2
            pos = ((length & 0x3F) << 8) | message[pos + 1]
            hops += 1
            continue
        if length & 0xC0:
            return None
        label = message[pos + 1 : pos + 1 + length]
        size += len(label) + 1
        if len(label) < length or size > MAX_NAME_BYTES:
            return None
        labels.append(label)
        pos += 1 + length
    return None
