"""Extra hyperscan expressions for the raw pass over a JSON body (scanner/rawjson.py).

A match in the decoded values of a JSON body is seen in its raw bytes by the rule
itself, unless an escape sits inside it or it runs from one string value into the
next. These expressions fire wherever that can happen; the decoded view around the
hit is then built and scanned, exactly as the full decoded view would be:

- escape: `\\u00XX` of a printable ASCII character that JSON encoders leave alone
  (the existing triggers cover letters, digits, `-`, `_`). Not triggered: `\\" \\\\
  \\n \\r \\t \\b \\f`, control characters, non-ASCII, and `< > & '` (Go and others
  escape these): none of them is in a token's alphabet, and keyword rules, whose
  values can hold them, have their own trigger.
- slash: `\\/` (PHP's default) hides the `/` of base64 alphabets and is too common in
  such bodies to trigger on: one hit (hyperscan's single-match flag) and the whole
  body is decoded instead (engine.py).
- keyword: a keyword rule's keyword followed by an assignment in the same string; or
  ending a string, when a joined string after it starts with the assignment.
- anchor: every anchor of the non-keyword rules (short ones lengthened by the rule's
  `expand` class), so a token whose anchor sits in one value and its tail in the next
  is joined.
- boundary: an anchor cut in two by the end of a string, when a joined string after it
  starts with the rest (or, the other way, a string starting with the rest of an anchor
  whose joined string before ends with its start): a token split inside its anchor.
- fingerprint: an operator secret as JSON encoders escape it (quotes, backslashes,
  control characters, non-ASCII).
- keyed: a key that names a secret, with a string value (`"client_secret": "`).
- bare: a whole string of 32-64 base64 characters, checked in place as a possible bare
  credential (scanner/bare.py); it opens no window.

"Joined" strings are those the decoded view puts next to each other: the next value,
and the next value that is not a short lower-case word ("text": the view without such
values joins across them). Whether one follows is checked on the raw bytes after the
hit (rawjson.RawJson.joined), not in the pattern: a pattern that skips up to 256 bytes
of structure doubled the cost of the whole pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from scanner import bare
from scanner.rules import Rule
from scanner.verify import SECRET_KEY_WORDS

ESCAPE, KEYWORD, ANCHOR, BOUNDARY, FINGERPRINT, KEYED, SLASH, BARE = (
    "escape", "keyword", "anchor", "boundary", "fingerprint", "keyed", "slash", "bare")
SINGLE = (SLASH,)  # reported once per scan (hyperscan's single-match flag)
MIN_TRIGGER = 5  # anchors shorter than this are lengthened with their rule's `expand` class
_NARROW = 16  # an expansion class this small (hex digits) counts as specific

# How a joined string must continue a hit for the hit to be a candidate.
STARTS, ENDS, ASSIGNS = "starts", "ends", "assigns"

_SKIP_ESCAPES = set(b"\"\\<>&'")
# After the keyword, the shape of the keyword rules (scanner/rules.py ASSIGN), tolerating
# JSON-escaped quotes and tabs; `_GLUE_IN` stays inside one string (no unescaped quote).
_GLUE = r"""[a-z0-9_.\-]{0,24}(?:[\\"'` \t]|\\t){0,12}"""
_GLUE_IN = r"""[a-z0-9_.\-]{0,24}(?:['` \t]|\\["t\\]){0,12}"""
_OP = "(?::=|=>|=|:)"
ASSIGN_START = rb"""(?i)^[a-z0-9_.\-]{0,24}(?:['` \t]|\\["t\\]){0,12}(?::=|=>|=|:)"""  # RE2, on a joined string


@dataclass(frozen=True, slots=True)
class Trigger:
    family: str
    expr: str
    rule: Rule | None = None
    joins: tuple[str, bytes] | None = None  # (STARTS | ENDS | ASSIGNS, the piece) a joined string must hold


def _lit(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return "".join(f"\\x{c:02x}" for c in raw)


def _class(chars: str) -> str:
    return "[" + "".join(f"\\x{ord(c):02x}" for c in dict.fromkeys(chars)) + "]"


def _times(cls: str, n: int) -> str:
    return f"{cls}{{{n}}}" if n else ""


def escape_trigger() -> str:
    codes = [c for c in range(0x20, 0x7F) if not (chr(c).isalnum() or c in b"-_" or c in _SKIP_ESCAPES)]
    alts = sorted({f"{c:02x}" for c in codes} | {f"{c:02X}" for c in codes})
    return r"\\u00(?:" + "|".join(alts) + ")"


def keyword_triggers(rule: Rule) -> Iterator[Trigger]:
    if not rule.context:
        return
    if rule.context.endswith("://"):
        yield Trigger(KEYWORD, "(?i)" + rule.context, rule)
        return
    yield Trigger(KEYWORD, "(?i)" + rule.context + _GLUE + _OP, rule)
    yield Trigger(KEYWORD, "(?i)" + rule.context + _GLUE_IN + '"', rule, (ASSIGNS, b""))


def _extension(rule: Rule, anchor: str) -> tuple[str, int]:
    k = MIN_TRIGGER - len(anchor) if rule.expand and len(anchor) < MIN_TRIGGER else 0
    return (_class(rule.expand) if k else ""), k


def anchor_triggers(rule: Rule) -> Iterator[Trigger]:
    """Plain anchors not already PREFIX entries (scanner/matcher.py: prefix rules, anchors of 4+).

    Not for keyword rules: their keyword trigger is narrower (a bare `password` in prose is no candidate)."""
    if rule.context:
        return
    for anchor in rule.anchors:
        if rule.prefix and len(anchor) >= 4:
            continue
        cls, k = _extension(rule, anchor)
        yield Trigger(ANCHOR, _lit(anchor) + _times(cls, k), rule)


def boundary_triggers(rule: Rule) -> Iterator[Trigger]:
    """Each cut inside each anchor, on the side with more of the anchor (the side that also has
    the lengthening on a tie): at least 2 of its characters, or 1 and a run of hex digits."""
    for anchor in rule.anchors:
        cls, k = _extension(rule, anchor)
        for i in range(1, len(anchor)):
            left, right = anchor[:i], anchor[i:]
            if len(left) > len(right) or (len(left) == len(right) and not k):
                if len(left) >= 2:
                    yield Trigger(BOUNDARY, _lit(left) + '"', rule, (STARTS, right.encode()))
            elif len(right) >= 2 or (k >= 3 and len(rule.expand) <= _NARROW):
                yield Trigger(BOUNDARY, r'[^\\]"' + _lit(right) + _times(cls, k), rule, (ENDS, left.encode()))
        if k:  # cut inside the lengthening: the whole anchor ends a string
            yield Trigger(BOUNDARY, _lit(anchor) + (f"{cls}{{0,{k - 1}}}" if k > 1 else "") + '"', rule)


def json_forms(text: bytes) -> list[bytes]:
    """How JSON encoders write `text` inside a string, where that differs from `text`."""
    try:
        value = text.decode("utf-8")
    except UnicodeDecodeError:
        return []
    forms = {orjson.dumps(value)[1:-1], json.dumps(value).encode()[1:-1]}
    forms.discard(text)
    return sorted(forms)


def fingerprint_triggers(texts: Iterable[bytes]) -> Iterator[str]:
    seen: set[bytes] = set()
    for text in texts:
        for form in json_forms(text):
            if form not in seen:
                seen.add(form)
                yield _lit(form)


def keyed_trigger() -> str:
    """A key holding a secret word and identifier characters after it, then a string value.

    Not `(?:[^"\\\\]|\\\\.)*` after the word: that keeps a state alive from every `secret` in prose
    to the end of its string and costs a third of the whole pass. Other keys naming a secret are
    still checked in every window (engine.py), and the keyword rule's own match opens one."""
    words = "|".join(w.replace("-", r"\-") for w in SECRET_KEY_WORDS)
    return r'(?i)(?:' + words + r')[a-z0-9_.\-]{0,32}"[ \t\r\n]{0,16}:[ \t\r\n]{0,16}"'


def triggers(rules: Iterable[Rule]) -> list[Trigger]:
    """Every raw-pass trigger of the rules (operator secrets: fingerprint_triggers)."""
    out = [Trigger(ESCAPE, escape_trigger()), Trigger(KEYED, keyed_trigger()), Trigger(SLASH, r"\\/"),
           Trigger(BARE, bare.RAW_TRIGGER)]
    for rule in rules:
        out += keyword_triggers(rule)
        out += anchor_triggers(rule)
        out += boundary_triggers(rule)
    seen: set[str] = set()
    return [t for t in out if not (t.expr in seen or seen.add(t.expr))]  # type: ignore[func-returns-value]

