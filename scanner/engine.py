"""The detection engine: one hyperscan pass per buffer, decoding only around hits.

scan(view) runs the matcher over the joined request view, then for every hit:
- a rule match: exact extraction (RE2) + verification -> finding;
- an encoded/reversed anchor or an escape trigger: decode a bounded window with
  that transform and scan the decoded bytes again (depth-bounded, byte-budgeted);
- an operator-secret literal: finding (no decoding needed);
- a plain token prefix that runs into the end of its field: kept as a dangling
  prefix and joined with the head of every other field (and, per agent, of the
  next request's fields) to catch a token split across fields or requests.
Work is linear: each decoded window is bounded, windows already covered are
skipped, and the total decoded bytes per scan are capped (exceeding the cap is an
`invalid` verdict, never a silent pass).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from scanner import decoders
from scanner.encodings import B32, B64, B64URL, HEX, REVERSED
from scanner.findings import FINGERPRINT as SRC_FINGERPRINT
from scanner.findings import Finding, Fingerprinter, ScanIssue, preview
from scanner.matcher import ANCHOR, ESCAPE, FINGERPRINT, PERCENT, PREFIX, RULE, TRIGGER, Entry, Matcher
from scanner.rules import GENERIC_KEYWORD_RULE, Rule
from scanner.segments import View
from scanner.verify import is_secret, keyword_value_ok

RADIUS = 1536  # bytes decoded on each side of a hit
MARGIN = 320  # a hit this far inside an already-decoded window is covered by it
HEAD = 256  # bytes of each field probed after a dangling prefix
MAX_PROBE_FIELDS = 4096
_TOKEN_CHARS = bytes(
    1 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"-_.+/=~") else 0 for c in range(256)
)
_TOKEN_TABLE = bytes(1 if c else 0 for c in _TOKEN_CHARS)
Origin = tuple[int, int, int]  # decoded window's (start, end) in the top-level buffer, and the hit there
_GROUP = {B64: 4, B64URL: 4, B32: 8}
_TRIGGER_LEN = {PERCENT: 3, ESCAPE: 4}  # shortest trigger (\xXX); \u00XX hits are 6 long


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 5
    budget_factor: int = 4  # decoded bytes allowed per scanned byte...
    budget_floor: int = 1 << 20  # ...plus this
    max_hits: int = 20_000  # candidate hits handled per request; beyond that the verdict is `invalid`


@dataclass
class Scan:
    """One request's scan state."""

    view: View
    budget: int
    findings: dict[str, Finding] = field(default_factory=dict)
    spans: list[tuple[int, int]] = field(default_factory=list)  # top-level spans of findings
    issues: list[ScanIssue] = field(default_factory=list)
    dangling: list[tuple[Rule, bytes]] = field(default_factory=list)
    decoded_bytes: int = 0
    hits_left: int = 0
    alt_pending: bool = False  # a view without enum-like values follows (scanner/request.py)

    def issue(self, code: str, detail: str) -> None:
        if not any(i.code == code for i in self.issues):
            self.issues.append(ScanIssue(code, detail))


class AgentMemory:
    """Per agent: dangling token prefixes of its last requests (split over requests)."""

    def __init__(self, keep: int = 4, ttl_s: float = 600.0) -> None:
        self._keep, self._ttl = keep, ttl_s
        self._lock = threading.Lock()
        self._data: dict[str, deque[tuple[float, Rule, bytes]]] = {}

    def recall(self, agent: str | None) -> list[tuple[Rule, bytes]]:
        if not agent:
            return []
        now = time.monotonic()
        with self._lock:
            items = self._data.get(agent, ())
            return [(r, d) for t, r, d in items if now - t < self._ttl]

    def remember(self, agent: str | None, dangling: Iterable[tuple[Rule, bytes]]) -> None:
        if not agent:
            return
        now = time.monotonic()
        with self._lock:
            q = self._data.setdefault(agent, deque(maxlen=self._keep))
            for rule, d in dangling:
                q.append((now, rule, d))
            if len(self._data) > 10_000:  # bounded: drop the oldest agent
                self._data.pop(next(iter(self._data)))


class Engine:
    def __init__(self, matcher: Matcher, fingerprinter: Fingerprinter, limits: Limits | None = None) -> None:
        self.matcher = matcher
        self.fp = fingerprinter
        self.limits = limits or Limits()
        self.memory = AgentMemory()

    # -- entry points ---------------------------------------------------------------

    def scan_view(self, view: View, keyed: Iterable[tuple[str, str]] = (), agent: str | None = None,
                  alt: View | None = None) -> Scan:
        data = view.data
        scan = Scan(view, self.limits.budget_floor + self.limits.budget_factor * (len(data) + len(alt.data if alt else b"")))
        scan.hits_left = self.limits.max_hits
        scan.alt_pending = alt is not None and bool(alt.parts)
        self._scan(scan, data, depth=0, chain=(), origin=None)
        scan.alt_pending = False
        if alt is not None and alt.parts:
            scan.view = alt
            self._scan(scan, alt.data, depth=0, chain=(), origin=None, prefixes=False)
            scan.view = view
        for value, location in keyed:
            self._keyed(scan, value, location)
        remembered = self.memory.recall(agent)
        if scan.dangling or remembered:
            self._probe_splits(scan, scan.dangling, remembered)
        self.memory.remember(agent, scan.dangling)
        return scan

    # -- one buffer ---------------------------------------------------------------

    def _scan(self, scan: Scan, data: bytes, depth: int, chain: tuple[str, ...], origin: Origin | None,
              prefixes: bool = True) -> None:
        entries = self.matcher.entries
        rule_ends: dict[int, list[int]] = {}
        windows: list[tuple[int, int, Entry]] = []
        prefix_hits: list[tuple[int, Entry]] = []
        prefixes = prefixes and depth == 0
        if scan.hits_left <= 0:
            return
        hits = self.matcher.scan(data, scan.hits_left)
        scan.hits_left -= len(hits)
        if scan.hits_left <= 0:
            # Benign traffic has a few hits per MB; this many is an attack on the scanner's time.
            scan.issue("too-many-candidates", f"more than {self.limits.max_hits} candidate matches")
        for eid, end in hits:
            entry = entries[eid]
            kind = entry.kind
            if kind is RULE:
                rule_ends.setdefault(eid, []).append(end)
            elif kind is ANCHOR:
                assert entry.form is not None
                windows.append((end - len(entry.form.text), end, entry))
            elif kind is TRIGGER:
                windows.append((self._trigger_start(data, end, entry.family), end, entry))
            elif kind is FINGERPRINT:
                self._fingerprint_hit(scan, data, end, entry, chain, origin)
            elif kind is PREFIX and prefixes:
                prefix_hits.append((end, entry))
        covered: dict[str, list[tuple[int, int]]] = {}
        for eid in sorted(rule_ends):  # provider rules first: they name a shared finding
            ends = rule_ends[eid]
            rule = entries[eid].rule
            assert rule is not None
            for end in _run_ends(ends):
                self._rule_hit(scan, data, rule, end, chain, origin, covered)
        if prefix_hits:
            self._dangling(scan, data, prefix_hits, covered)
        self._decode_windows(scan, data, windows, depth, chain, origin)

    @staticmethod
    def _trigger_start(data: bytes, end: int, family: str) -> int:
        if family == ESCAPE and end >= 6 and data[end - 6 : end - 4] == b"\\u":
            return end - 6
        return end - _TRIGGER_LEN[family]

    def _location(self, scan: Scan, start: int, origin: Origin | None) -> str:
        top = origin[2] if origin else start
        if not scan.view.parts:
            return "body"
        return scan.view.segment(top)[2]

    def _add(self, scan: Scan, finding: Finding, span: tuple[int, int]) -> None:
        """One finding per secret value (the first rule to see it names it)."""
        key = finding.fingerprint if finding.source != SRC_FINGERPRINT else finding.rule
        if key not in scan.findings:
            scan.findings[key] = finding
        scan.spans.append(span)

    # -- rule matches ------------------------------------------------------------

    def _rule_hit(self, scan: Scan, data: bytes, rule: Rule, end: int, chain: tuple[str, ...],
                  origin: Origin | None, covered: dict[str, list[tuple[int, int]]]) -> None:
        got = self.matcher.extract(rule, data, end)
        if got is None:
            return
        candidates = [(got, chain)]
        if origin is None and scan.view.parts:
            _, seg_end = scan.view.bounds(got[0])
            if got[1] > seg_end and scan.alt_pending and _enumish(data[seg_end:scan.view.bounds(seg_end)[1]]):
                return  # runs into "text"/"user"...: the view without those values judges it
            if got[1] > seg_end:  # crosses into the next field: prefer a match inside the field
                inside = self.matcher.extract(rule, data, seg_end)
                candidates = [(inside, chain)] if inside is not None and inside[0] == got[0] else []
                candidates.append((got, chain + ("split",)))
        for (start, stop, secret), transforms in candidates:
            if is_secret(rule.id, secret.decode("utf-8", "replace"), keyword=rule.keyword, min_entropy=rule.min_entropy):
                break
        else:
            return
        covered.setdefault(rule.id, []).append((start, stop))
        location = self._location(scan, start, origin)
        prefix = rule.anchors[0] if rule.prefix and rule.anchors else ""
        self._add(scan, Finding(rule.id, rule.source, location, transforms, preview(secret, _prefix_of(rule, secret) or prefix),
                                self.fp(secret)), origin[:2] if origin else (start, stop))

    def _keyed(self, scan: Scan, value: str, location: str) -> None:
        if not keyword_value_ok(value):
            return
        secret = value.encode("utf-8", "surrogatepass")
        if location == "":
            off = scan.view.data.find(secret)
            location = scan.view.segment(off)[2] if off >= 0 else "body"
        rule = GENERIC_KEYWORD_RULE
        self._add(scan, Finding(rule.id, rule.source, location, (), preview(secret), self.fp(secret)), (0, 0))

    def _fingerprint_hit(self, scan: Scan, data: bytes, end: int, entry: Entry, chain: tuple[str, ...],
                         origin: Origin | None) -> None:
        assert entry.form is not None
        start = end - len(entry.form.text)
        transforms = chain
        if entry.family not in ("plain",):
            transforms += (entry.family,)
        if entry.fragment:
            transforms += ("fragment",)
        location = self._location(scan, start, origin)
        secret = self._secret_value(entry.secret)
        self._add(scan, Finding(f"operator-secret:{entry.secret}", SRC_FINGERPRINT, location, transforms,
                                f"…({len(secret)})", self.fp(secret)), origin[:2] if origin else (start, end))

    def _secret_value(self, name: str) -> bytes:
        return self.matcher.secret_values.get(name, b"")  # type: ignore[attr-defined]

    # -- decoding around hits -----------------------------------------------------

    def _decode_windows(self, scan: Scan, data: bytes, windows: list[tuple[int, int, Entry]], depth: int,
                        chain: tuple[str, ...], origin: Origin | None) -> None:
        done: dict[tuple[str, int, str], tuple[int, int]] = {}
        windows.sort(key=lambda w: w[0])
        for start, end, entry in windows:
            family = entry.family
            if family == REVERSED and chain and chain[-1] == REVERSED:
                continue  # reversing a reversed window only finds what the parent found
            key = _window_key(family, start, entry)
            prev = done.get(key)
            if prev and (prev[0] == 0 or prev[0] + MARGIN <= start) and (prev[1] == len(data) or end <= prev[1] - MARGIN):
                continue
            got = self._decode(data, start, end, entry)
            if got is None:
                continue
            lo, hi, decoded = got
            done[key] = (lo, hi)
            if not decoded:
                continue
            if depth + 1 > self.limits.max_depth:
                scan.issue("nesting-too-deep", f"encodings nested deeper than {self.limits.max_depth} levels")
                return
            scan.decoded_bytes += len(decoded)
            if scan.decoded_bytes > scan.budget:
                scan.issue("decode-budget-exceeded", f"more than {scan.budget} bytes decoded around hits")
                return
            self._scan(scan, decoded, depth + 1, chain + (_NAME[family],), origin or (lo, hi, start))

    @staticmethod
    def _decode(data: bytes, start: int, end: int, entry: Entry) -> tuple[int, int, bytes] | None:
        family = entry.family
        if family in _GROUP:
            assert entry.form is not None
            return decoders.group_decode(data, start, end, entry.form.phase, RADIUS, family)
        if family == HEX:
            assert entry.form is not None
            return decoders.hex_decode(data, start, end, entry.form.separator, RADIUS)
        if family == PERCENT:
            return decoders.percent_decode(data, start, end, RADIUS)
        if family == ESCAPE:
            return decoders.escape_decode(data, start, end, RADIUS)
        if family == REVERSED:
            return decoders.reverse_window(data, start, end, RADIUS)
        return None

    # -- tokens split across fields or requests -----------------------------------

    def _dangling(self, scan: Scan, data: bytes, prefixes: list[tuple[int, Entry]],
                  covered: dict[str, list[tuple[int, int]]]) -> None:
        seen = set()
        for end, entry in prefixes:
            rule, form = entry.rule, entry.form
            assert rule is not None and form is not None
            start = end - len(form.text)
            if any(s <= start < e for s, e in covered.get(rule.id, ())):
                continue
            _, seg_end = scan.view.bounds(start)
            tail = data[start:seg_end]
            if len(tail) >= rule.max_len or tail.translate(_TOKEN_TABLE).count(b"\x00"):
                continue  # not at the end of its field, or not token characters
            if (rule.id, tail) not in seen and len(scan.dangling) < 8:
                seen.add((rule.id, tail))
                scan.dangling.append((rule, tail))

    def _probe_splits(self, scan: Scan, current: list[tuple[Rule, bytes]], remembered: list[tuple[Rule, bytes]]) -> None:
        """Join each dangling prefix with the head of every field, in one matcher pass."""
        heads = [h for h in scan.view.heads(HEAD, MAX_PROBE_FIELDS) if _TOKEN_CHARS[h[0][0]]]
        probes: list[tuple[int, Rule, bytes, str, int, int]] = []
        chunks, pos = [], 0
        for label, group in (("split", current), ("split-request", remembered)):
            for rule, prefix in group:
                for head, pi, vi in heads:
                    if head.startswith(prefix):
                        continue  # the prefix's own field
                    probes.append((pos, rule, prefix, label, pi, vi))
                    chunks.append(prefix + head)
                    pos += len(chunks[-1]) + 1
        if not probes:
            return
        data = b"\n".join(chunks)
        starts = [p[0] for p in probes]
        for eid, end in self.matcher.scan(data):
            entry = self.matcher.entries[eid]
            if entry.kind is not RULE:
                continue
            start, rule, prefix, label, pi, vi = probes[max(0, bisect_right(starts, end - 1) - 1)]
            if entry.rule is not rule:
                continue
            got = self.matcher.extract_from(rule, data[start:end])
            if got is None or got[1] <= len(prefix) or got[0] != 0:
                continue
            secret = got[2]
            if is_secret(rule.id, secret.decode("utf-8", "replace"), keyword=rule.keyword, min_entropy=rule.min_entropy):
                self._add(scan, Finding(rule.id, rule.source, scan.view.location_of(pi, vi), (label,),
                                        preview(secret, _prefix_of(rule, secret)), self.fp(secret)), (0, 0))


_NAME = {B64: "base64", B64URL: "base64", B32: "base32", HEX: "hex", PERCENT: "url-encoded", ESCAPE: "unicode-escaped",
         REVERSED: "reversed"}


def _window_key(family: str, start: int, entry: Entry) -> tuple[str, int, str]:
    if family in _GROUP:
        assert entry.form is not None
        return family, (start - entry.form.phase) % _GROUP[family], ""
    if family == HEX:
        assert entry.form is not None
        return family, start % 2, entry.form.separator
    return family, 0, ""


def _enumish(value: bytes) -> bool:
    return len(value) <= 24 and value.islower() and value.replace(b"_", b"").isalpha()


def _run_ends(ends: list[int]) -> list[int]:
    """Variable-length rules report every end offset of a token: keep the last of each run."""
    ends.sort()
    out = []
    for i, e in enumerate(ends):
        if i + 1 == len(ends) or ends[i + 1] != e + 1:
            out.append(e)
    return out


def _prefix_of(rule: Rule, secret: bytes) -> str:
    for anchor in rule.anchors:
        if rule.prefix and secret.startswith(anchor.encode()):
            return anchor
    return ""
