"""The single hyperscan pass: every rule, encoded anchor, decode trigger and fingerprint.

Hyperscan reports end offsets only (start-of-match tracking refuses large bounded
repeats), so regex rules are re-matched exactly with RE2 on a window that ends at
the reported offset; literals know their own length. Scratch space is per thread:
the service scans from a thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import hyperscan
import re2

from scanner.encodings import B32, B64, B64URL, HEX, PLAIN, REVERSED, Form, base32_forms, base64_forms, hex_forms
from scanner.rules import Rule

# Entry kinds
RULE = "rule"
ANCHOR = "anchor"  # an encoded or reversed form of a rule anchor: decode around it
PREFIX = "prefix"  # a plain anchor that starts a token: split-prefix joining
TRIGGER = "trigger"  # an escape that no encoder produces for this character: decode around it
FINGERPRINT = "fingerprint"  # an operator secret (or fragment of one), plain or encoded

PERCENT = "percent"
ESCAPE = "escape"

# %XX / \uXXXX / \xXX escapes of letters, digits, '-' and '_': RFC 3986 and every
# JSON encoder leave these characters alone, so only a deliberate obfuscation
# (or a secret hidden from byte scanners) produces them.
_ALNUM_HEX = r"(?:3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|2[Dd]|5[Ff])"
TRIGGERS = (
    (PERCENT, r"%" + _ALNUM_HEX),
    (PERCENT, r"%25" + _ALNUM_HEX),  # encoded twice
    (ESCAPE, r"\\u00" + _ALNUM_HEX),
    (ESCAPE, r"\\x" + _ALNUM_HEX),
)

MIN_ANCHOR = 5  # short anchors are lengthened with their rule's `expand` class up to this
MAX_EXPANSION = 1024


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    rule: Rule | None = None
    form: Form | None = None
    family: str = ""
    secret: str = ""  # FINGERPRINT: the operator secret's name
    fragment: bool = False


@dataclass(slots=True)
class FingerprintLiteral:
    name: str
    form: Form
    fragment: bool


def expand_anchor(anchor: str, charset: str) -> list[str]:
    out = [anchor]
    while charset and len(out[0]) < MIN_ANCHOR and len(out) * len(charset) <= MAX_EXPANSION:
        out = [a + c for a in out for c in charset]
    return out


def _expand_to(anchor: str, charset: str, length: int) -> list[str]:
    out = [anchor]
    while charset and len(out[0]) < length and len(out) * len(charset) <= 256:
        out = [a + c for a in out for c in charset]
    return out if len(out[0]) >= length else []


def anchor_forms(rule: Rule) -> list[Form]:
    forms: list[Form] = []
    for anchor in rule.anchors:
        expanded = [a.encode() for a in expand_anchor(anchor, rule.expand)]
        for lit in expanded:
            rev = lit[::-1]
            forms.append(Form(rev, REVERSED))
            b64 = base64_forms(lit)
            # base64 of base64: the determined run of the inner encoding, encoded again
            forms += b64 + base64_forms(rev) + base32_forms(lit) + [g for f in b64 for g in base64_forms(f.text, min_chars=6)]
        for raw in (a.encode() for a in _expand_to(anchor, rule.expand, 3)):
            forms += hex_forms(raw) + hex_forms(raw[::-1])
    return list({(f.text, f.family, f.phase): f for f in forms}.values())


def _literal_regex(text: bytes) -> bytes:
    return b"".join(b"\\x%02x" % c for c in text)


@dataclass
class Matcher:
    rules: Sequence[Rule]
    fingerprints: Sequence[FingerprintLiteral] = ()
    secret_values: dict[str, bytes] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        exprs: list[bytes] = []
        self._re2: dict[str, re2._Regexp] = {}
        self._re2_head: dict[str, re2._Regexp] = {}
        for rule in self.rules:
            self._add(exprs, rule.pattern.encode(), Entry(RULE, rule=rule))
            self._re2[rule.id] = re2.compile(("(?:" + rule.pattern + r")\z").encode())
            self._re2_head[rule.id] = re2.compile(("^(?:" + rule.pattern + ")").encode())
            for form in anchor_forms(rule):
                self._add(exprs, _literal_regex(form.text), Entry(ANCHOR, rule=rule, form=form, family=form.family))
            if rule.prefix:
                for anchor in (a for a in rule.anchors if len(a) >= 4):
                    self._add(exprs, _literal_regex(anchor.encode()), Entry(PREFIX, rule=rule, form=Form(anchor.encode(), PLAIN)))
        for family, pattern in TRIGGERS:
            self._add(exprs, pattern.encode(), Entry(TRIGGER, family=family))
        for fp in self.fingerprints:
            self._add(exprs, _literal_regex(fp.form.text), Entry(FINGERPRINT, form=fp.form, family=fp.form.family, secret=fp.name, fragment=fp.fragment))
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=[0] * len(exprs))
        self._local = threading.local()

    def _add(self, exprs: list[bytes], expr: bytes, entry: Entry) -> None:
        exprs.append(expr)
        self.entries.append(entry)

    def scan(self, data: bytes, limit: int = 1 << 62) -> list[tuple[int, int]]:
        """(entry id, end offset) for every match, in order of end offset; stops after `limit`."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        hits: list[tuple[int, int]] = []
        append = hits.append

        def on_match(eid: int, _start: int, end: int, _flags: int, _ctx: object) -> bool:
            append((eid, end))
            return len(hits) >= limit  # True stops the scan

        if data:
            try:
                self._db.scan(data, match_event_handler=on_match, scratch=scratch)
            except hyperscan.ScanTerminated:
                pass
        return hits

    def extract(self, rule: Rule, data: bytes, end: int) -> tuple[int, int, bytes] | None:
        """Exact match of `rule` ending at `end`: (secret start, secret end, secret bytes)."""
        lo = max(0, end - rule.max_len - 64)
        m = self._re2[rule.id].search(data[lo:end])
        if m is None:
            return None
        s, e, value = _secret_group(m)
        return lo + s, lo + e, value


    def extract_from(self, rule: Rule, data: bytes) -> tuple[int, int, bytes] | None:
        """Longest match of `rule` starting at offset 0 of `data` (a small probe)."""
        m = self._re2_head[rule.id].search(data)
        if m is None:
            return None
        return _secret_group(m)


def _secret_group(m) -> tuple[int, int, bytes]:  # noqa: ANN001 (re2 match)
    """The secret: the last capturing group that took part (gitleaks-style patterns), else the match."""
    for group in range(m.re.groups, 0, -1):
        s, e = m.span(group)
        if s >= 0 and e > s:
            return s, e, m.group(group)
    s, e = m.span()
    return s, e, m.group()


def count_literals(rules: Iterable[Rule]) -> int:
    return sum(len(anchor_forms(r)) for r in rules)


__all__ = ["Matcher", "Entry", "FingerprintLiteral", "RULE", "ANCHOR", "PREFIX", "TRIGGER", "FINGERPRINT",
           "PERCENT", "ESCAPE", "B64", "B64URL", "B32", "HEX", "REVERSED"]
