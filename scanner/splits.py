"""Tokens cut short, and tokens split across fields or requests: when a join is real.

A token prefix that runs to the end of its field (`sk-ant-api03-Xk9...` with the rest
elsewhere) is kept as *dangling* and joined with the head of every other field of the
request and, per agent, of its next few requests. Joining anything with everything
finds "tokens" in ordinary text (the prefix plus `application` from a content type), so
a join counts only when the joined text really is one token across the boundary:

- the rule's whole pattern matches from the prefix's start and takes bytes from both
  sides, and the head's part ends where the head's token ends (its field ends, or a
  byte that is not a letter or digit follows);
- where the provider has a checksum (GitHub's classic tokens: CRC32 of the random part,
  base62, in the last six characters) it must verify; that alone decides;
- otherwise each side carries at least JOIN_MIN characters of the token's random part
  (beyond its public prefix, `sk-ant-api03-`; the head JOIN_MIN_AFTER_WHOLE when the
  prefix already matched on its own, as half an OpenAI key does), the head's part mixes letter cases or
  letters and digits, is not made of words (`claude-sonnet-4-5`) nor a typed id
  (`toolu_01...`, `user_...`), both sides use the same character classes (a UUID or a hex
  digest is not the rest of a base62 key), and the joined value passes the rule's entropy
  and placeholder checks.

An agent's dangling prefixes are remembered for KEEP_SECONDS (at most KEEP_ITEMS
distinct ones); a join whose head was a whole field may go on into the next request,
so it is remembered in turn (a token cut in three).

A prefix that stops short of a whole token with at least PARTIAL_MIN random characters
(`sk-ant-api03-` and 23 of its characters) is a *partial* token: a piece of a credential
on its own, reported as the rule's finding with the transform `partial`.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import re2

from scanner.bare import wordy
from scanner.rules import PROVIDER_RULES, Rule
from scanner.verify import is_secret

JOIN_MIN = 8
JOIN_MIN_AFTER_WHOLE = 24  # a prefix that is a whole token by itself continues only with a long piece
PARTIAL_MIN = 16
MAX_WORDY = 0.65  # random pieces of 8 / 16 characters exceed it 2% / 0.3% of the time (base62)
KEEP_SECONDS = 60.0
KEEP_ITEMS = 16  # distinct prefixes remembered per agent (each is joined with every field of its next requests)
MAX_AGENTS = 10_000
_ALNUM = bytes(1 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122) else 0 for c in range(256))
_PARTIAL_RUN = bytes(1 if (_ALNUM[c] or c in b"-_") else 0 for c in range(256))
_HEX = frozenset(b"0123456789abcdefABCDEF")
_FILLERS = (b"A", b"a", b"0")
_BASE62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

Extract = Callable[[Rule, bytes], "tuple[int, int, bytes] | None"]  # Matcher.extract_from


@dataclass(frozen=True, slots=True)
class Dangling:
    rule: Rule
    text: bytes
    whole: bool = False  # already a match of its rule (a variable-length token may still go on)


# -- what a token's public part and checksum are ---------------------------------------------


@lru_cache(maxsize=256)
def _public_re(pattern: str) -> re2._Regexp:
    return re2.compile(("^(?:" + pattern + ")").encode())


def public_len(rule: Rule, text: bytes) -> int:
    """Bytes of `text` every token of the rule's provider starts with (`sk-ant-api03-`, `ghp_`)."""
    if rule.public:
        m = _public_re(rule.public).search(text)
        if m is not None:
            return m.end()
    return max((len(a) for a in rule.anchors if text.startswith(a.encode())), default=0)


def public_prefix(value: bytes) -> int:
    """The public prefix of an operator's secret, by the provider rules whose anchor it starts with."""
    return max((public_len(r, value) for r in PROVIDER_RULES if r.prefix), default=0)


def checksum(rule: Rule, token: bytes) -> bool | None:
    """True / False when the provider's token format has a checksum; None when it has none."""
    if rule.checksum == "github-crc32":
        body, check = token[4:-6], token[-6:]
        value = 0
        for c in check:
            digit = _BASE62.find(bytes((c,)))
            if digit < 0:
                return False
            value = value * 62 + digit
        return len(token) == 40 and zlib.crc32(body) == value
    return None


# -- joins and partial tokens ------------------------------------------------------------------


def _has_classes(part: bytes) -> tuple[bool, bool, bool]:
    """(upper case, lower case, digits) present."""
    return any(65 <= c <= 90 for c in part), any(97 <= c <= 122 for c in part), any(48 <= c <= 57 for c in part)


def _classes(part: bytes) -> int:
    return sum(_has_classes(part))


# Below this many characters a class of the token's alphabet may be missing by chance
# (base62: no upper-case letter in 12 random characters happens 1 time in 700; no digit in
# 40, 1 in 700): the two sides of a real split agree on which classes the token uses.
_CLASS_SPAN = (12, 12, 40)


def _same_alphabet(own: bytes, part: bytes) -> bool:
    """Both sides use the same character classes, where the other side is long enough to show it."""
    for has_own, has_part, span in zip(_has_classes(own), _has_classes(part), _CLASS_SPAN):
        if (has_own and not has_part and len(part) >= span) or (has_part and not has_own and len(own) >= span):
            return False
    return True


def _typed_id(part: bytes) -> bool:
    """An id with a lower-case type word in front (`toolu_01...`, `user_...`, `msg_...`, `req_...`)."""
    head = part[:12]
    cut = head.find(b"_")
    return cut >= 3 and head[:cut].isalpha() and head[:cut].islower()


def _hexish(part: bytes) -> bool:
    """Hex digits (dashes between them: a UUID)."""
    return _HEX.issuperset(part.replace(b"-", b""))


def _random_like(part: bytes) -> bool:
    """Letters of both cases or letters and digits, and not words (`claude-sonnet-4-5`, `keep-alive`)."""
    return _classes(part) >= 2 and wordy(part) <= MAX_WORDY


class Shapes:
    """Token-shape questions about one rule set (the matcher's RE2 head matcher answers them)."""

    def __init__(self, extract_from: Extract) -> None:
        self._extract = extract_from

    def can_continue(self, rule: Rule, text: bytes) -> bool:
        """Is `text` a proper prefix of some token the rule matches (more characters would do)?"""
        for filler in _FILLERS:
            m = self._extract(rule, text + filler * max(1, rule.max_len - len(text)))
            if m is not None and m[0] == 0 and m[1] > len(text):
                return True
        return False

    @staticmethod
    def maybe_keep(rule: Rule, text: bytes) -> bool:
        """The cheap half of worth_keeping(): random characters of its own, or a checksum to make
        a bare prefix's join certain."""
        return bool(rule.checksum) or len(text) - public_len(rule, text) >= JOIN_MIN

    def worth_keeping(self, rule: Rule, text: bytes) -> bool:
        """A dangling prefix that a join could complete: maybe_keep(), and a proper prefix of a token."""
        return self.maybe_keep(rule, text) and self.can_continue(rule, text)

    @staticmethod
    def maybe_partial(rule: Rule, run: bytes) -> bool:
        """The cheap half of partial(): long enough past the public prefix, and random-looking."""
        tail = run[public_len(rule, run) :]
        return len(tail) >= PARTIAL_MIN and _random_like(tail)

    def partial(self, rule: Rule, run: bytes) -> bool:
        """A token cut short: its public prefix and PARTIAL_MIN or more random characters, no whole match
        (maybe_partial() first: this one costs RE2 matches and an entropy)."""
        if not self.maybe_partial(rule, run) or self._extract(rule, run) is not None or not self.can_continue(rule, run):
            return False
        tail = run[public_len(rule, run) :]
        return is_secret(rule.id, tail.decode("ascii", "replace"), keyword=False, min_entropy=rule.min_entropy)

    def join_ok(self, prefix: Dangling, head: bytes, taken: int, secret: bytes, whole: bool = True) -> bool:
        """Is `prefix` + `head[:taken]` (= `secret`, the rule's match) one real token? (`whole`: the
        head is its whole field, not the first bytes of a longer one.)"""
        rule = prefix.rule
        if taken < 1 or (taken < len(head) and _ALNUM[head[taken]]) or (taken == len(head) and not whole):
            return False  # the head's token goes on past the match (or may): the match is not its end
        verified = checksum(rule, secret)
        if verified is False:
            return False
        if verified is None:  # no checksum: the shape of both sides decides (cheap tests before entropy)
            own = prefix.text[public_len(rule, prefix.text) :]
            part = head[:taken]
            least = JOIN_MIN_AFTER_WHOLE if prefix.whole else JOIN_MIN
            if len(own) < JOIN_MIN or taken < least or not _random_like(part) or _typed_id(part):
                return False
            if not _same_alphabet(own, part) or (_hexish(part) and not _hexish(own)):
                return False
        return is_secret(rule.id, secret.decode("utf-8", "replace"), keyword=rule.keyword, min_entropy=rule.min_entropy)


def partial_run(data: bytes, start: int, anchor_len: int, end: int) -> bytes:
    """The anchor at `start` and the letters, digits, `-` and `_` after it, up to `end` at most."""
    marks = data[start + anchor_len : end].translate(_PARTIAL_RUN)
    stop = marks.find(b"\x00")
    return data[start : end if stop < 0 else start + anchor_len + stop]


# -- per-agent memory --------------------------------------------------------------------------


class AgentMemory:
    """Per agent: the dangling prefixes of its last KEEP_SECONDS (split over requests).

    Only time ends a memory: a count of requests would let an agent push its first
    half out with a few harmless requests before sending the second. The same
    prefix sent again (a conversation re-sent on every call) refreshes its entry
    instead of taking another; past KEEP_ITEMS distinct prefixes the oldest goes.
    """

    def __init__(self, keep_seconds: float = KEEP_SECONDS, keep_items: int = KEEP_ITEMS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl, self._items, self._clock = keep_seconds, keep_items, clock
        self._lock = threading.Lock()
        self._data: dict[str, dict[tuple[str, bytes], tuple[float, Dangling]]] = {}  # agent -> key -> (seen, item)

    def recall(self, agent: str | None) -> list[Dangling]:
        """The agent's live prefixes, oldest first."""
        if not agent:
            return []
        now = self._clock()
        with self._lock:
            items = self._data.get(agent)
            if not items:
                return []
            for key in [k for k, (seen, _) in items.items() if now - seen >= self._ttl]:
                del items[key]
            if not items:
                del self._data[agent]
            return [d for _, d in items.values()]

    def remember(self, agent: str | None, dangling: Iterable[Dangling]) -> None:
        if not agent:
            return
        now = self._clock()
        with self._lock:
            items = self._data.pop(agent, {})
            for d in dangling:
                key = (d.rule.id, d.text)
                items.pop(key, None)  # re-inserted: the dict's order is the items' last sighting
                items[key] = (now, d)
            while len(items) > self._items:
                del items[next(iter(items))]
            if items:
                self._data[agent] = items  # re-inserted: the dict's order is the agents' last use
            while len(self._data) > MAX_AGENTS:
                self._data.pop(next(iter(self._data)))
