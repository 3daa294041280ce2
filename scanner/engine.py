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

A JSON body is not turned into a view up front: its raw bytes get the one pass, and
only around hits is a local view of decoded values built and scanned as above
(scan_raw; scanner/rawjson.py). A clean body costs the validation and the pass.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from scanner import bare, decoders, jsontriggers, nested
from scanner.encodings import B32, B64, B64URL, HEX, REVERSED
from scanner.findings import FINGERPRINT as SRC_FINGERPRINT
from scanner.findings import HEURISTIC, PATTERN
from scanner.findings import Finding, Fingerprinter, ScanIssue, preview
from scanner.matcher import ANCHOR, ESCAPE, FINGERPRINT, GZIP64, PERCENT, PREFIX, RAW, RULE, TRIGGER, Entry, Matcher
from scanner.rawjson import SEPARATOR, WINDOW, Local, Piece, RawJson, Window, decoded_view, enumish, escaped, local_views
from scanner.rules import GENERIC_KEYWORD_RULE, Rule
from scanner.segments import Part, View
from scanner.splits import AgentMemory, Dangling, Shapes, partial_run
from scanner.verify import is_secret, is_secret_key_name, is_secret_key_name_cached, keyword_value_ok

RADIUS = 1536  # bytes decoded on each side of a hit
MARGIN = 320  # a hit this far inside an already-decoded window is covered by it
HEAD = 256  # bytes of each field probed after a dangling prefix
MAX_PROBE_FIELDS = 4096
# A match that starts in the last 1-2 characters of a field and runs on into the next is no split
# token: "SK"/"AC" (Twilio's anchors) end ordinary words and ids ("TASK", a nanoid) and hex follows often.
MIN_SPLIT_HEAD = 3
MAX_LOCATIONS = 32  # locations reported for one secret value...
MAX_FINDINGS = 256  # ...and findings for one scan (docs/architecture.md)
_TOKEN_CHARS = bytes(
    1 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"-_.+/=~") else 0 for c in range(256)
)
_TOKEN_TABLE = bytes(1 if c else 0 for c in _TOKEN_CHARS)
Origin = tuple[int, int, int]  # decoded window's (start, end) in the top-level buffer, and the hit there
Head = tuple[bytes, Callable[[], str], bool]  # the first bytes of a field, its location, the whole field?
_GROUP = {B64: 4, B64URL: 4, B32: 8}
_TRIGGER_LEN = {PERCENT: 3, ESCAPE: 4, GZIP64: 4}  # shortest trigger (\xXX); \u00XX hits are 6 long
# `gzip | base64`: base64 characters read from the header on, and bytes inflated from them, per hit
# (inflated bytes count against the scan's decode budget like every decoded window)
GZIP_REACH = 64 << 10
GZIP_MAX_OUT = 256 << 10


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 5
    budget_factor: int = 4  # decoded bytes allowed per scanned byte...
    budget_floor: int = 1 << 20  # ...plus this
    max_hits: int = 20_000  # candidate hits handled per request; beyond that the verdict is `invalid`
    max_checks: int = 4096  # bare-value and partial-token candidates judged (entropy...) per request; same
    max_peels: int = 4096  # long runs decoded and scanned again (scanner/nested.py) per request; same
    max_stream_bytes: int = 64 << 20  # bytes inflated from streams nested in runs, per request (as a body)


@dataclass
class Scan:
    """One request's scan state."""

    view: View
    budget: int
    top: View = field(default_factory=View)  # the request's view (scan.view is the one being scanned)
    raws: list[RawJson] = field(default_factory=list)
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)  # by (secret value, location)
    locations: dict[str, int] = field(default_factory=dict)  # locations reported per secret value
    dropped: int = 0  # findings past the caps
    spans: list[tuple[int, int]] = field(default_factory=list)  # top-level spans of findings
    issues: list[ScanIssue] = field(default_factory=list)
    dangling: list[Dangling] = field(default_factory=list)  # token prefixes at the end of their field
    carry: list[Dangling] = field(default_factory=list)  # joins that may go on in the next request
    decoded_bytes: int = 0
    hits_left: int = 0
    checks_left: int = 0
    alt_pending: bool = False  # a view without enum-like values follows (scanner/request.py)
    peeled: int = 0  # generic layers (scanner/nested.py) above the buffer being scanned
    peels_left: int = 0
    stream_left: int = 0

    def issue(self, code: str, detail: str) -> None:
        if not any(i.code == code for i in self.issues):
            self.issues.append(ScanIssue(code, detail))


class Engine:
    def __init__(self, matcher: Matcher, fingerprinter: Fingerprinter, limits: Limits | None = None) -> None:
        self.matcher = matcher
        self.fp = fingerprinter
        self.limits = limits or Limits()
        self.memory = AgentMemory()
        self.shapes = Shapes(matcher.extract_from)

    # -- entry points ---------------------------------------------------------------

    def scan_view(self, view: View, keyed: Iterable[tuple[str, str]] = (), agent: str | None = None,
                  alt: View | None = None, raws: Iterable[RawJson] = (), bare_values: Iterable[tuple[bytes, str]] = ()) -> Scan:
        raws = list(raws)
        size = len(view.data) + len(alt.data if alt else b"") + sum(len(r.data) for r in raws)
        scan = Scan(view, self.limits.budget_floor + self.limits.budget_factor * size, top=view, raws=raws)
        scan.hits_left = self.limits.max_hits
        scan.checks_left = self.limits.max_checks
        scan.peels_left = self.limits.max_peels
        scan.stream_left = self.limits.max_stream_bytes
        self._scan_local(scan, view, alt or View())
        for value, location in keyed:
            self._keyed(scan, value, location)
        for secret, location in bare_values:
            self._bare(scan, secret, location)
        for raw in raws:
            self.scan_raw(scan, raw)
        remembered = self.memory.recall(agent)
        if scan.dangling or remembered:
            self._probe_splits(scan, scan.dangling, remembered)
        self.memory.remember(agent, scan.dangling + scan.carry)
        return scan

    def _scan_local(self, scan: Scan, view: View, alt: View) -> None:
        """One view, then (when it has short enum-like values) the same without them."""
        saved = scan.view
        scan.view = view
        scan.alt_pending = bool(alt.parts)
        hits = self._scan(scan, view.data, depth=0, chain=(), origin=None)
        scan.alt_pending = False
        if alt.parts and hits:  # a match across removed values holds an anchor or a keyword: a hit here
            scan.view = alt
            self._scan(scan, alt.data, depth=0, chain=(), origin=None, prefixes=False, runs=False)
        scan.view = saved

    # -- a JSON body, raw --------------------------------------------------------------

    def scan_raw(self, scan: Scan, raw: RawJson) -> None:
        """One pass over the raw JSON; local views of decoded strings around the hits only."""
        if scan.hits_left <= 0:
            return
        hits = self.matcher.scan(raw.data, scan.hits_left)
        entries = self.matcher.entries
        if any(entries[eid].family == jsontriggers.SLASH for eid, _ in hits):
            self._scan_decoded(scan, raw)
            return
        scan.hits_left -= len(hits)
        if scan.hits_left <= 0:
            scan.issue("too-many-candidates", f"more than {self.limits.max_hits} candidate matches")
        bare_ends = [end for eid, end in hits if entries[eid].family == jsontriggers.BARE]
        if bare_ends:
            hits = [h for h in hits if entries[h[0]].family != jsontriggers.BARE]
            for end in bare_ends:
                self._raw_bare(scan, raw, end - 1)
        locals_ = [raw.pieces(win) for win in self._raw_windows(scan, raw, hits)]
        if locals_:
            view, alt = local_views(raw, locals_)
            self._scan_local(scan, view, alt if any(p is not SEPARATOR for p in alt.parts) else View())
        for local in locals_:
            self._raw_keyed(scan, raw, local)
        self._raw_runs(scan, raw, nested.runs(raw.data))  # after the windows, as a view peels after its windows

    def _scan_decoded(self, scan: Scan, raw: RawJson) -> None:
        """`\\/` (PHP's default) hides the `/` of base64 alphabets from the raw pass and is too
        common in such bodies to trigger on: the whole body is decoded and scanned instead."""
        view, alt, keyed, bare_values = decoded_view(raw, is_secret_key_name)
        self._scan_local(scan, view, alt)
        saved, scan.view = scan.view, view
        for value, location in keyed:
            self._keyed(scan, value, location)
        scan.view = saved
        for secret, location in bare_values:
            self._bare(scan, secret, location)

    def _raw_runs(self, scan: Scan, raw: RawJson, spans: list[tuple[int, int]]) -> None:
        """Long encoded runs of the raw JSON, peeled in place (base64 and hex need no unescaping;
        a JSON-escaped line break is dropped): located at the string that holds each."""
        def location(start: int) -> Callable[[], list[str]]:
            def where() -> list[str]:
                piece = Piece(start, start, -1, False)
                piece.open = raw.opening_quote(piece)
                return [raw.location(piece)]
            return where

        saved = scan.view
        for start, stop in nested.worth_peeling(raw.data, spans):
            scan.view = View([Part([b"-"], location(start))])
            self._peel(scan, raw.data, start, stop, 0, (), (0, 0, 0))
        scan.view = saved

    def _runs(self, scan: Scan, data: bytes, depth: int, chain: tuple[str, ...], origin: Origin | None) -> None:
        spans = nested.runs(data)
        if origin is None and scan.view.parts:
            spans = list(_by_value(scan.view, spans))  # a request view joins its values: a run is peeled value by value
        for start, stop in nested.worth_peeling(data, spans):
            self._peel(scan, data, start, stop, depth, chain, origin or (start, stop, start))

    def _peel(self, scan: Scan, data: bytes, start: int, stop: int, depth: int, chain: tuple[str, ...],
              origin: Origin) -> None:
        """One generic layer off a long run (scanner/nested.py), scanned like a decoded window.
        Fail-closed like every decode: past the byte budget or the depth bound, a run that holds
        text or a stream makes the verdict `invalid`, never a silent pass."""
        if scan.hits_left <= 0 or scan.peels_left < 0 or scan.decoded_bytes > scan.budget:
            return
        left = scan.budget - scan.decoded_bytes
        layer = nested.peel(data, start, stop, max(0, left), scan.stream_left)
        if layer is None:
            return
        scan.peels_left -= 1
        if scan.peels_left < 0:  # each costs a decode and a pass (~20 us): a body of them is an attack on time
            scan.issue("too-many-candidates", f"more than {self.limits.max_peels} encoded runs holding text")
            return
        if scan.peeled >= nested.DEPTH or depth + 1 > self.limits.max_depth:
            scan.issue("nesting-too-deep", f"encodings nested deeper than {nested.DEPTH} generic layers "
                                           f"or {self.limits.max_depth} in all")
            return
        if layer.stream:  # a compressed stream: bounded like a Content-Encoding body, not like a window
            scan.stream_left -= len(layer.data)
            if layer.capped:
                scan.issue("decompression-bomb", f"a stream in an encoded run inflates past {nested.RATIO}x "
                                                 f"or {self.limits.max_stream_bytes} bytes")
        else:
            scan.decoded_bytes += len(layer.data)
            if layer.capped:
                scan.decoded_bytes = scan.budget + 1
                scan.issue("decode-budget-exceeded", f"more than {scan.budget} bytes decoded around hits")
        scan.peeled += 1
        self._scan(scan, layer.data, depth + 1, chain + layer.names, origin)
        scan.peeled -= 1

    def _raw_bare(self, scan: Scan, raw: RawJson, close: int) -> None:
        """A whole JSON string of the base64 alphabet (its closing quote at `close`), judged in place."""
        data = raw.data
        opening = data.rfind(b'"', max(0, close - bare.MAX_LEN - 1), close)
        if opening < 0 or escaped(data, opening) or raw.is_key(close):
            return
        name = raw.key_before(opening)
        if name is None or bare.exempt_name(name) or is_secret_key_name_cached(name):
            return
        value = data[opening + 1 : close]
        if bare.shape_ok(value):
            self._bare(scan, value, raw.location(Piece(opening + 1, close, opening, True)))

    def _raw_windows(self, scan: Scan, raw: RawJson, hits: list[tuple[int, int]]) -> list[Window]:
        """Merged windows (body order) around the hits that the decoded view could judge otherwise
        (a token prefix that stops inside its string is judged in place: a partial token or nothing)."""
        entries = self.matcher.entries
        spots: list[tuple[int, Entry]] = []  # (a byte of the hit, its entry)
        rule_ends: dict[int, list[int]] = {}
        for eid, end in hits:
            entry = entries[eid]
            if entry.kind is RULE:
                rule_ends.setdefault(eid, []).append(end)
            elif entry.kind is PREFIX and _quiet_prefix(raw.data, entry, end):
                self._raw_partial(scan, raw, entry, end)
                continue
            elif entry.joins is None or raw.joined(end, entry.joins):
                spots.append((end + _shift(entry), entry))
        for eid, ends in rule_ends.items():
            spots += [(end - 1, entries[eid]) for end in _run_ends(ends) if not self._quiet_rule(raw.data, entries[eid], end)]
        spots.sort(key=lambda s: s[0])
        windows: list[Window] = []
        for pos, entry in spots:
            back, ahead = _reach(entry)
            lo, hi = max(0, pos - back), min(len(raw.data), pos + ahead)
            if windows and lo <= windows[-1].hi:
                windows[-1].hi = max(windows[-1].hi, hi)
            else:
                windows.append(Window(lo, hi))
        return windows

    def _raw_partial(self, scan: Scan, raw: RawJson, entry: Entry, end: int) -> None:
        rule, form = entry.rule, entry.form
        assert rule is not None and form is not None
        start = end - len(form.text)
        run = partial_run(raw.data, start, len(form.text), start + rule.max_len)
        if self.shapes.maybe_partial(rule, run) and self._check(scan) and self.shapes.partial(rule, run):
            piece = Piece(start, start, -1, False)
            piece.open = raw.opening_quote(piece)
            self._partial(scan, rule, run, raw.location(piece), (0, 0))

    def _partial(self, scan: Scan, rule: Rule, run: bytes, location: str, span: tuple[int, int]) -> None:
        self._add(scan, Finding(rule.id, rule.source, location, ("partial",), preview(run, _prefix_of(rule, run)),
                                self.fp(run)), span)

    def _quiet_rule(self, data: bytes, entry: Entry, end: int) -> bool:
        """A match with no quote or escape near it, not a secret: the decoded view has the same match."""
        rule = entry.rule
        assert rule is not None
        start = self.matcher.match_start(rule, data, end)
        if start is None or _SEAMS.intersection(data[max(0, start - 6) : end + 1]):
            return False
        got = self.matcher.extract(rule, data, end)
        return got is not None and not is_secret(rule.id, got[2].decode("utf-8", "replace"), keyword=rule.keyword,
                                                 min_entropy=rule.min_entropy)

    def _raw_keyed(self, scan: Scan, raw: RawJson, local: Local) -> None:
        """Values under keys that name a secret (`"client_secret": "..."`)."""
        for key, value in local.pairs:
            name = raw.decode(key.lo, key.hi).decode("utf-8", "replace")
            if is_secret_key_name_cached(name):
                text = raw.value_of(value)
                if text is not None:
                    self._keyed(scan, text.decode("utf-8", "surrogatepass"), raw.location(value))

    # -- one buffer ---------------------------------------------------------------

    def _scan(self, scan: Scan, data: bytes, depth: int, chain: tuple[str, ...], origin: Origin | None,
              prefixes: bool = True, runs: bool = True) -> int:
        """Match one buffer and act on its hits; returns how many hits there were."""
        entries = self.matcher.entries
        rule_ends: dict[int, list[int]] = {}
        windows: list[tuple[int, int, Entry]] = []
        prefix_hits: list[tuple[int, Entry]] = []
        prefixes = prefixes and depth == 0
        if scan.hits_left <= 0:
            return 0
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
            # RAW: triggers of the raw JSON pass; decoded text has nothing to do with them
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
        if runs:
            self._runs(scan, data, depth, chain, origin)
        return len(hits)

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
        """One finding per secret value and location (the proxy's audit needs every place a secret
        was: a URL path holding one is redacted). The first rule to see it there names it, but our
        provider rules outrank plugin patterns, which outrank the keyword heuristic (the order in
        which two views of a request meet a value is no reason to name it differently).

        Bounded (a body can repeat one token 100,000 times): MAX_LOCATIONS per secret value and
        MAX_FINDINGS per scan, in the order met (URL, headers, body); URL locations always."""
        value = finding.fingerprint if finding.source != SRC_FINGERPRINT else finding.rule
        key = (value, finding.location)
        scan.spans.append(span)
        old = scan.findings.get(key)
        if old is not None:
            if _rank(finding) > _rank(old):
                scan.findings[key] = finding
            return
        places = scan.locations.get(value, 0)
        if (places >= MAX_LOCATIONS or len(scan.findings) >= MAX_FINDINGS) and not finding.location.startswith("url:"):
            scan.dropped += 1
            return
        scan.locations[value] = places + 1
        scan.findings[key] = finding

    # -- rule matches ------------------------------------------------------------

    def _rule_hit(self, scan: Scan, data: bytes, rule: Rule, end: int, chain: tuple[str, ...],
                  origin: Origin | None, covered: dict[str, list[tuple[int, int]]]) -> None:
        got = self.matcher.extract(rule, data, end)
        if got is None:
            return
        candidates = [(got, chain)]
        if origin is None and scan.view.parts:
            _, seg_end = scan.view.bounds(got[0])
            if got[1] > seg_end and scan.alt_pending and enumish(data[seg_end:scan.view.bounds(seg_end)[1]]):
                # Runs into "text"/"user"...: the view without those values judges it. Not a
                # dangling prefix either (that made a bogus `split` finding with every field head).
                covered.setdefault(rule.id, []).append(got[:2])
                return
            if got[1] > seg_end:  # crosses into the next field: prefer a match inside the field
                inside = self.matcher.extract(rule, data, seg_end)
                candidates = [(inside, chain)] if inside is not None and inside[0] == got[0] else []
                if seg_end - got[0] >= MIN_SPLIT_HEAD:
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

    def _bare(self, scan: Scan, secret: bytes, location: str) -> None:
        if self._check(scan) and bare.is_bare_secret(secret):
            self._add(scan, Finding(bare.RULE, HEURISTIC, location, (), preview(secret), self.fp(secret)), (0, 0))

    def _check(self, scan: Scan) -> bool:
        """One more heuristic candidate judged. Each costs tens of microseconds (detect-secrets' entropy,
        RE2 shape tests): a body made of candidates would cost seconds, so past the cap it is `invalid`."""
        scan.checks_left -= 1
        if scan.checks_left < 0:
            scan.issue("too-many-candidates", f"more than {self.limits.max_checks} bare-value or partial-token candidates")
        return scan.checks_left >= 0

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
            if family == GZIP64 and prev and prev[0] <= start < prev[1]:
                continue  # inside a run already inflated from its first header on
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
        if family == GZIP64:
            return decoders.gzip_base64_decode(data, start, GZIP_REACH, GZIP_MAX_OUT)
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
        """Token prefixes: one not inside a match and cut short is a finding (partial); one that runs
        to the end of its field, matched or not, may be the first piece of a split whose rest comes
        later (scanner/splits.py)."""
        seen = set()
        for end, entry in prefixes:
            rule, form = entry.rule, entry.form
            assert rule is not None and form is not None
            start = end - len(form.text)
            whole = any(s <= start < e for s, e in covered.get(rule.id, ()))  # a match already: found
            _, seg_end = scan.view.bounds(start)
            run = partial_run(data, start, len(form.text), min(seg_end, start + rule.max_len))
            if not whole and self.shapes.maybe_partial(rule, run) and self._check(scan) and self.shapes.partial(rule, run):
                self._partial(scan, rule, run, self._location(scan, start, None), (start, start + len(run)))
            tail = data[start:seg_end]
            if len(tail) >= rule.max_len or tail.translate(_TOKEN_TABLE).count(b"\x00"):
                continue  # not at the end of its field, or not token characters
            if ((rule.id, tail) not in seen and len(scan.dangling) < 8 and self.shapes.maybe_keep(rule, tail)
                    and self._check(scan) and self.shapes.can_continue(rule, tail)):
                seen.add((rule.id, tail))
                scan.dangling.append(Dangling(rule, tail, whole))

    def _probe_splits(self, scan: Scan, current: list[Dangling], remembered: list[Dangling]) -> None:
        """Join each dangling prefix with the head of every field, in one matcher pass; keep the joins
        that are one real token (scanner/splits.py)."""
        heads = self._heads(scan)
        probes: list[tuple[int, Dangling, Head, str]] = []
        chunks, pos = [], 0
        for label, group in (("split", current), ("split-request", remembered)):
            for d in group:
                for head in heads:
                    if d.text in head[0] or (not head[2] and head[0] in d.text):
                        continue  # the prefix's own field
                    probes.append((pos, d, head, label))
                    chunks.append(d.text + head[0])
                    pos += len(chunks[-1]) + 1
        if not probes:
            return
        data = b"\n".join(chunks)
        starts = [p[0] for p in probes]
        # Only a match that ends past the prefix can take bytes from the head; of those, the
        # furthest end first: the rule's match from the prefix's start is longest there, so one
        # RE2 call per probe usually decides (a match of every end offset made a 1 MB body
        # with one remembered prefix cost 0.2-0.3 s).
        ends: dict[int, list[int]] = {}
        for eid, end in self.matcher.scan(data):
            entry = self.matcher.entries[eid]
            if entry.kind is not RULE:
                continue
            index = max(0, bisect_right(starts, end - 1) - 1)
            start, d = probes[index][:2]
            if entry.rule is d.rule and end - start > len(d.text):
                ends.setdefault(index, []).append(end)
        longest: dict[int, tuple[int, int, bytes]] = {}  # probe -> the longest match of its rule from its start
        for index, candidates in ends.items():
            start, d = probes[index][:2]
            for end in sorted(set(candidates), reverse=True):
                got = self.matcher.extract_from(d.rule, data[start:end])
                if got is not None and got[0] == 0 and got[1] > len(d.text):
                    longest[index] = got
                    break
        for index, (_, stop, secret) in sorted(longest.items()):
            _, d, (head, where, whole), label = probes[index]
            taken = stop - len(d.text)
            if not self.shapes.join_ok(d, head, taken, secret, whole):
                continue
            rule = d.rule
            self._add(scan, Finding(rule.id, rule.source, where(), (label,), preview(secret, _prefix_of(rule, secret)),
                                    self.fp(secret)), (0, 0))
            if whole and taken == len(head) and self.shapes.worth_keeping(rule, secret):
                scan.carry.append(Dangling(rule, secret, True))  # the whole field joined: the token may go on

    @staticmethod
    def _heads(scan: Scan) -> list[Head]:
        """The heads of the request's fields (at most MAX_PROBE_FIELDS) that start with a token character."""
        top = scan.top
        heads: list[Head] = [(h, _bind_location(top, pi, vi), whole) for h, pi, vi, whole in top.heads(HEAD, MAX_PROBE_FIELDS)]
        for raw in scan.raws:
            if len(heads) >= MAX_PROBE_FIELDS:
                break
            heads += raw.heads(HEAD, MAX_PROBE_FIELDS - len(heads))
        return [h for h in heads if h[0] and _TOKEN_CHARS[h[0][0]]]


def _by_value(view: View, spans: list[tuple[int, int]]) -> Iterable[tuple[int, int]]:
    """Runs of a joined view cut at its values' bounds (each piece long enough to peel)."""
    for start, stop in spans:
        while start < stop:
            _, hi = view.bounds(start)
            hi = min(max(hi, start + 1), stop)
            if hi - start >= nested.MIN_RUN:
                yield start, hi
            start = hi


def _reach(entry: Entry) -> tuple[int, int]:
    """Raw bytes kept before and after a hit: a decode window; or its rule's longest match, and
    room for the structure before the neighbouring value a split token continues into."""
    if entry.kind is RAW and entry.family == jsontriggers.ESCAPE:
        return 4 * WINDOW, 4 * WINDOW  # a token escaped character by character is 6 times its length
    if entry.kind is RAW and entry.family == jsontriggers.KEYED:
        return 256, 512  # the key before, the start of its value after
    if entry.kind is TRIGGER and entry.family == GZIP64:
        return WINDOW, GZIP_REACH  # the compressed stream runs on from its header
    if entry.kind in (ANCHOR, TRIGGER, FINGERPRINT) or entry.rule is None:
        return WINDOW, WINDOW
    match = entry.rule.max_len + 64
    return match + _STRUCTURE_ROOM, match + _STRUCTURE_ROOM


_STRUCTURE_ROOM = 256  # raw bytes between two values (`"}, {"type": "text", "text": "`); a window
# that ends between strings takes in the next value wherever it is (rawjson.RawJson.pieces)


def _shift(entry: Entry) -> int:
    """From a hit's end to a byte of it inside a string: a `"key": "` trigger ends on the
    value's opening quote."""
    return 0 if entry.family == jsontriggers.KEYED else -1


_SEAMS = frozenset(b'"\\')  # where a raw match and a decoded one can differ: a string's edge, an escape


def _quiet_prefix(data: bytes, entry: Entry, end: int) -> bool:
    """A token prefix that cannot dangle: its token run stops inside its string, at no escape."""
    rule = entry.rule
    assert rule is not None
    tail = data[end : end + rule.max_len]
    stop = tail.translate(_TOKEN_TABLE).find(b"\x00")
    if stop < 0:
        return len(tail) >= rule.max_len
    return tail[stop] not in _SEAMS


def _rank(finding: Finding) -> int:
    if finding.source == HEURISTIC:
        return 0
    return 1 if finding.source == PATTERN and ":" in finding.rule else 2  # plugin ids: "llm-guard:..."


def _bind_location(view: View, part: int, value: int) -> Callable[[], str]:
    return lambda: view.location_of(part, value)


_NAME = {B64: "base64", B64URL: "base64", B32: "base32", HEX: "hex", PERCENT: "url-encoded", ESCAPE: "unicode-escaped",
         REVERSED: "reversed", GZIP64: "gzip-base64"}


def _window_key(family: str, start: int, entry: Entry) -> tuple[str, int, str]:
    if family in _GROUP:
        assert entry.form is not None
        return family, (start - entry.form.phase) % _GROUP[family], ""
    if family == HEX:
        assert entry.form is not None
        return family, start % 2, entry.form.separator
    return family, 0, ""


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
