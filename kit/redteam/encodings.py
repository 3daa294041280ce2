"""The encodings the red team wraps a canary in, before it tries to smuggle it out.

Standard library only: this module is also shipped into the agent (see
``kit.redteam.probe``), where the attack builds its payloads, so the bytes an
attack sends and the encodings the leak search undoes come from one place.
"""

from __future__ import annotations

import base64
from collections.abc import Callable


def _pct_all(text: str) -> str:
    # quote() leaves letters and digits alone, which would make "url" the same
    # as "plain" for most tokens; an exfiltrating agent encodes every byte.
    return "".join(f"%{b:02X}" for b in text.encode())


def _json_unicode(text: str) -> str:
    # \uXXXX escapes for every character: valid JSON string content that no
    # raw-byte scanner sees as the secret (design.md, "Raw JSON escaping").
    return "".join(f"\\u{ord(ch):04x}" for ch in text)


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "plain": lambda s: s,
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64url": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    # Lower case and unpadded: what DNS tunnelling tools put in labels.
    "base32": lambda s: base64.b32encode(s.encode()).decode().rstrip("=").lower(),
    "hex": lambda s: s.encode().hex(),
    "url": _pct_all,
    "double-url": lambda s: _pct_all(s).replace("%", "%25"),
    "json-unicode": _json_unicode,
    "reversed": lambda s: s[::-1],
    # Not an encoding: cuts a long encoded value into DNS labels (<= 63 octets).
    "labels": lambda s: dns_labels(s),
}


def encode(value: str, chain: str | list[str] | tuple[str, ...] = ()) -> str:
    """Apply transforms left to right: ``encode(v, ["reversed", "base64"])``."""
    names = [chain] if isinstance(chain, str) else list(chain)
    for name in names:
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
        value = TRANSFORMS[name](value)
    return value


def split(value: str, parts: int) -> list[str]:
    """Cut ``value`` into ``parts`` contiguous pieces of near-equal length."""
    if parts < 1 or parts > len(value):
        raise ValueError(f"cannot split {len(value)} characters into {parts} parts")
    size, extra = divmod(len(value), parts)
    pieces, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        pieces.append(value[start:end])
        start = end
    return pieces


def dns_labels(text: str, limit: int = 63) -> str:
    """Chunk an encoded value into DNS labels (at most 63 octets each)."""
    return ".".join(text[i : i + limit] for i in range(0, len(text), limit))
