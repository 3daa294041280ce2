"""Host names as the proxy compares them: one canonical ASCII form, IP literals recognised.

Why this exists: "pastebin.com" must also match "PasteBin.COM.", "ｐａｓｔｅｂｉｎ.com"
(full-width, mapped by IDNA), "pastebin。com" and "xn--..." forms; and "127.1",
"0x7f.1", "2130706433" or "017700000001" are all 127.0.0.1 to the C resolver
(inet_aton), so each must be recognised as an IP literal, not a name.

Pure: imports nothing from mitmproxy.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_DECIMAL = re.compile(r"^(?:0|[1-9][0-9]*)$")
_OCTAL = re.compile(r"^0[0-7]+$")
_HEX = re.compile(r"^0[xX][0-9a-fA-F]+$")
_MAX_NAME = 253


class HostError(ValueError):
    """The host is not a usable DNS name or IP literal."""


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # canonical: lower-case ASCII (punycode), no trailing dot; an IP's canonical text
    ip: IPAddress | None = None  # set when the host is an IP literal
    canonical: bool = True  # False for IP literals in a non-canonical notation ("127.1", "0x7f.1")

    @property
    def is_ip(self) -> bool:
        return self.ip is not None


@functools.lru_cache(maxsize=4096)
def parse_host(raw: str) -> Host:
    """Canonicalise ``raw`` (a URL host, Host header host, SNI or CONNECT target).

    Raises :class:`HostError` for anything the proxy should not try to reach.
    Cached: every request asks about the same few names several times.
    """
    text = raw.strip()
    if not text:
        raise HostError("empty host")
    if text.startswith("[") and text.endswith("]"):
        return _ipv6(text[1:-1], raw)
    if ":" in text:
        return _ipv6(text, raw)
    text = _idna(text)
    if text.endswith("."):
        text = text[:-1]
    v4 = parse_inet_aton(text)
    if v4 is not None:
        return Host(str(v4), v4, _is_dotted_quad(text))
    return Host(_valid_name(text), None)


def matches(name: str, pattern: str) -> bool:
    """True when ``name`` is ``pattern`` or one of its subdomains (both canonical)."""
    return name == pattern or name.endswith("." + pattern)


def _ipv6(text: str, raw: str) -> Host:
    address, _, scope = text.partition("%")
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        raise HostError(f"not a valid host: {raw!r}") from None
    # A zone id ("%eth0") only makes sense for link-local addresses, which are denied anyway.
    canonical = not scope and address.lower() == ip.compressed
    return Host(ip.compressed, ip, canonical)


def _idna(text: str) -> str:
    """Map a name to ASCII the way resolvers do (IDNA 2003 nameprep: case, width, dots)."""
    try:
        if text.isascii():
            ascii_name = text.lower()
            for label in ascii_name.split("."):
                if label.startswith("xn--"):
                    label.encode("ascii").decode("idna")  # reject bad punycode
            return ascii_name
        return text.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise HostError(f"not a valid internationalised name: {text!r} ({exc})") from None


def _valid_name(name: str) -> str:
    if len(name) > _MAX_NAME:
        raise HostError(f"host name longer than {_MAX_NAME} characters: {name[:40]!r}...")
    labels = name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise HostError(f"not a valid host name: {name!r} (label {label!r})")
    if labels[-1].isdigit():
        # An all-numeric last label that inet_aton refused (e.g. out of range):
        # resolvers may still treat it as a number; no real TLD is numeric.
        raise HostError(f"numeric host that is not a valid IPv4 literal: {name!r}")
    return name


def parse_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """IPv4 literal in any inet_aton notation (1 to 4 parts, decimal/octal/hex), else None.

    Out-of-range numeric forms raise :class:`HostError`: they are neither a
    valid address nor a valid name.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_numeric(p) for p in parts):
        return None
    values = [_number(p) for p in parts]
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (5 - len(parts))):
        raise HostError(f"IPv4 literal out of range: {text!r}")
    value = 0
    for v in head:
        value = value << 8 | v
    value = value << (8 * (5 - len(parts))) | last
    return ipaddress.IPv4Address(value)


def _numeric(part: str) -> bool:
    return bool(_DECIMAL.match(part) or _OCTAL.match(part) or _HEX.match(part))


def _number(part: str) -> int:
    if _HEX.match(part):
        return int(part[2:], 16)
    if _OCTAL.match(part):
        return int(part, 8)
    return int(part)


def _is_dotted_quad(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(_DECIMAL.match(p) for p in parts)
