"""Encoded forms of known literals (anchors, operator secrets and their fragments).

Finding `ghp_` inside base64 without decoding everything: base64 maps 3 bytes to
4 characters, so the encoding of `...ghp_...` depends on where `ghp_` falls in a
3-byte group. For each of the 3 alignments we encode the literal behind 0, 1 or 2
unknown bytes and keep only the output characters whose 6 bits all come from the
literal: those characters appear verbatim in any base64 text that holds it.
Base32 works the same with 5-byte groups and 5-bit characters.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

# Families: how a hit is decoded (scanner/decoders.py).
B64 = "base64"
B64URL = "base64url"
B32 = "base32"
HEX = "hex"
REVERSED = "reversed"
PLAIN = "plain"

HEX_SEPARATORS = ("", ":", " ", "-", ",", "\\x")


@dataclass(frozen=True, slots=True)
class Form:
    """One encoded form of a literal: the text to find and how to decode around it."""

    text: bytes
    family: str
    phase: int = 0  # characters between the group boundary and `text` (base64: 0-3, base32: 0-7)
    separator: str = ""  # hex only


def _determined_run(encoded: bytes, known: list[bool]) -> tuple[int, bytes]:
    """Longest run of encoded characters fully determined by the literal."""
    best_start, best_len, start = 0, 0, None
    for i, ok in enumerate(known + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = None
    return best_start, encoded[best_start : best_start + best_len]


def _group_forms(literal: bytes, group_bytes: int, bits: int, encode, family: str, min_chars: int) -> list[Form]:
    chars_per_group = group_bytes * 8 // bits
    forms = []
    for lead in range(group_bytes):
        padded = bytes(lead) + literal
        padded += bytes(-len(padded) % group_bytes)
        encoded = encode(padded)[: len(padded) * 8 // bits]
        lo, hi = lead * 8, (lead + len(literal)) * 8
        known = [lo <= i * bits and (i + 1) * bits <= hi for i in range(len(encoded))]
        start, run = _determined_run(encoded, known)
        if len(run) >= min_chars:
            forms.append(Form(run, family, phase=start % chars_per_group))
    return forms


def base64_forms(literal: bytes, min_chars: int = 4) -> list[Form]:
    std = _group_forms(literal, 3, 6, base64.b64encode, B64, min_chars)
    url = _group_forms(literal, 3, 6, base64.urlsafe_b64encode, B64URL, min_chars)
    # Identical text in both alphabets: keep one (the standard decoder handles both).
    seen = {f.text for f in std}
    return std + [f for f in url if f.text not in seen]


def base32_forms(literal: bytes, min_chars: int = 5) -> list[Form]:
    """RFC 4648 upper case, and lower case: DNS tunnelling tools (and DNS itself, which folds
    case) carry base32 in lower case; the decoder folds case back (scanner/decoders.py)."""
    upper = _group_forms(literal, 5, 5, base64.b32encode, B32, min_chars)
    return upper + [Form(f.text.lower(), B32, f.phase) for f in upper if f.text.lower() != f.text]


def hex_forms(literal: bytes) -> list[Form]:
    forms = []
    for sep in HEX_SEPARATORS:
        for digits in (literal.hex(), literal.hex().upper()):
            pairs = [digits[i : i + 2] for i in range(0, len(digits), 2)]
            text = "".join(sep + p for p in pairs) if sep == "\\x" else sep.join(pairs)
            forms.append(Form(text.encode(), HEX, separator=sep))
    return list({f.text: f for f in forms}.values())


def all_forms(literal: bytes, *, plain: bool = False) -> list[Form]:
    """Every encoded form the engine looks for (plain too when asked)."""
    rev = literal[::-1]
    forms = [Form(rev, REVERSED)] if rev != literal else []
    if plain:
        forms.append(Form(literal, PLAIN))
    for lit in (literal, rev):
        forms += base64_forms(lit) + base32_forms(lit) + hex_forms(lit)
    return forms
