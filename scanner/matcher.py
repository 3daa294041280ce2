"""The hyperscan pass: every rule, encoded anchor, decode trigger and fingerprint.

Hyperscan reports end offsets only (start-of-match tracking refuses large bounded
repeats), so regex rules are re-matched exactly with RE2 on a window that ends at
the reported offset; literals know their own length. Scratch space is per thread:
the service scans from a thread pool.

Two databases: the rules (about 30,000 expressions, compiled once per process: 10-25 s
on a 2-core machine) and the operator's secrets (a few hundred literals, compiled in
milliseconds whenever the secrets directory changes). A reload that recompiled the
rules kept a new secret undetected for 20 s and more under load.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import hyperscan
import re2

from scanner import jsontriggers
from scanner.encodings import B32, B64, B64URL, HEX, PLAIN, REVERSED, Form, base32_forms, base64_forms, hex_forms
from scanner.rules import Rule

# Entry kinds
RULE = "rule"
ANCHOR = "anchor"  # an encoded or reversed form of a rule anchor: decode around it
PREFIX = "prefix"  # a plain anchor that starts a token: split-prefix joining
TRIGGER = "trigger"  # an escape that no encoder produces for this character: decode around it
FINGERPRINT = "fingerprint"  # an operator secret (or fragment of one), plain or encoded
RAW = "raw"  # a trigger of the raw JSON pass only (scanner/jsontriggers.py); ignored in decoded text

PERCENT = "percent"
ESCAPE = "escape"
GZIP64 = "gzip-base64"

# %XX / \uXXXX / \xXX escapes of letters, digits, '-' and '_': RFC 3986 and every
# JSON encoder leave these characters alone, so only a deliberate obfuscation
# (or a secret hidden from byte scanners) produces them.
_ALNUM_HEX = r"(?:3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|2[Dd]|5[Ff])"
TRIGGERS = (
    (PERCENT, r"%" + _ALNUM_HEX),
    (PERCENT, r"%25" + _ALNUM_HEX),  # encoded twice
    (ESCAPE, r"\\u00" + _ALNUM_HEX),
    (ESCAPE, r"\\x" + _ALNUM_HEX),
    (GZIP64, r"H4sI"),  # a gzip header (1f 8b 08) in base64: inflate the run it starts
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
    joins: tuple[str, bytes] | None = None  # RAW: how a joined string must continue the hit (jsontriggers)


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


Hit = tuple[int, int]  # (entry id, end offset)


class _Database:
    """One compiled hyperscan database and its per-thread scratch."""

    def __init__(self, exprs: list[bytes], first_id: int, flags: list[int] | None = None) -> None:
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        ids = list(range(first_id, first_id + len(exprs)))
        self._db.compile(expressions=exprs, ids=ids, elements=len(exprs), flags=flags or [0] * len(exprs))
        self._local = threading.local()

    def scan(self, data: bytes, hits: list[Hit], limit: int) -> None:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        append = hits.append

        def on_match(eid: int, _start: int, end: int, _flags: int, _ctx: object) -> bool:
            append((eid, end))
            return len(hits) >= limit  # True stops the scan

        try:
            self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        except hyperscan.ScanTerminated:
            pass


class RuleSet:
    """The rules' database: compiled once, shared by every Matcher (secrets reloads)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self.entries: list[Entry] = []
        self.re2: dict[str, re2._Regexp] = {}
        self.re2_head: dict[str, re2._Regexp] = {}
        exprs: list[bytes] = []
        for rule in self.rules:
            self._add(exprs, rule.pattern.encode(), Entry(RULE, rule=rule))
            self.re2[rule.id] = re2.compile(("(?:" + rule.pattern + r")\z").encode())
            self.re2_head[rule.id] = re2.compile(("^(?:" + rule.pattern + ")").encode())
            for form in anchor_forms(rule):
                self._add(exprs, _literal_regex(form.text), Entry(ANCHOR, rule=rule, form=form, family=form.family))
            if rule.prefix:
                for anchor in (a for a in rule.anchors if len(a) >= 4):
                    self._add(exprs, _literal_regex(anchor.encode()), Entry(PREFIX, rule=rule, form=Form(anchor.encode(), PLAIN)))
        for family, pattern in TRIGGERS:
            self._add(exprs, pattern.encode(), Entry(TRIGGER, family=family))
        for t in jsontriggers.triggers(self.rules):
            self._add(exprs, t.expr.encode(), Entry(RAW, rule=t.rule, family=t.family, joins=t.joins))
        single = [hyperscan.HS_FLAG_SINGLEMATCH if e.family in jsontriggers.SINGLE else 0 for e in self.entries]
        self.db = _Database(exprs, 0, single)

    def _add(self, exprs: list[bytes], expr: bytes, entry: Entry) -> None:
        exprs.append(expr)
        self.entries.append(entry)


class Matcher:
    """The rule set plus the operator's secrets: one scan() reports the hits of both."""

    def __init__(self, ruleset: RuleSet, fingerprints: Sequence[FingerprintLiteral] = (),
                 secret_values: dict[str, bytes] | None = None) -> None:
        self.ruleset = ruleset
        self.rules = ruleset.rules
        self.secret_values = secret_values or {}
        self.entries = list(ruleset.entries)
        exprs: list[bytes] = []
        for fp in fingerprints:
            exprs.append(_literal_regex(fp.form.text))
            self.entries.append(Entry(FINGERPRINT, form=fp.form, family=fp.form.family, secret=fp.name, fragment=fp.fragment))
        for pattern in jsontriggers.fingerprint_triggers(fp.form.text for fp in fingerprints):
            exprs.append(pattern.encode())
            self.entries.append(Entry(RAW, family=jsontriggers.FINGERPRINT))
        self._secrets = _Database(exprs, len(ruleset.entries)) if exprs else None

    def scan(self, data: bytes, limit: int = 1 << 62) -> list[Hit]:
        """(entry id, end offset) for every match, in order of end offset; stops after `limit`."""
        hits: list[Hit] = []
        if not data:
            return hits
        self.ruleset.db.scan(data, hits, limit)
        if self._secrets is not None and len(hits) < limit:
            n = len(hits)
            self._secrets.scan(data, hits, limit)
            if 0 < n < len(hits):
                hits.sort(key=lambda h: h[1])
        return hits

    def extract(self, rule: Rule, data: bytes, end: int) -> tuple[int, int, bytes] | None:
        """Exact match of `rule` ending at `end`: (secret start, secret end, secret bytes)."""
        lo = max(0, end - rule.max_len - 64)
        m = self.ruleset.re2[rule.id].search(data[lo:end])
        if m is None:
            return None
        s, e, value = _secret_group(m)
        return lo + s, lo + e, value

    def match_start(self, rule: Rule, data: bytes, end: int) -> int | None:
        """Start of the whole match of `rule` ending at `end` (extract() gives the secret's span)."""
        lo = max(0, end - rule.max_len - 64)
        m = self.ruleset.re2[rule.id].search(data[lo:end])
        return None if m is None else lo + m.start()

    def extract_from(self, rule: Rule, data: bytes) -> tuple[int, int, bytes] | None:
        """Longest match of `rule` starting at offset 0 of `data` (a small probe)."""
        m = self.ruleset.re2_head[rule.id].search(data)
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


__all__ = ["Matcher", "RuleSet", "Entry", "FingerprintLiteral", "RULE", "ANCHOR", "PREFIX", "TRIGGER", "FINGERPRINT", "RAW",
           "PERCENT", "ESCAPE", "GZIP64", "B64", "B64URL", "B32", "HEX", "REVERSED"]
