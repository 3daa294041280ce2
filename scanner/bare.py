"""A bare credential: a whole value that is one random token and nothing else.

Most secrets have a provider prefix or sit next to a keyword; some do not (an AWS
secret access key is 40 characters of `[A-Za-z0-9/+]`, nothing more). A value counts
when the *whole* field is such a token: the string value of a JSON object member (not
an array element: see RAW_TRIGGER), a URL query or form value, a header value. Checked
on small candidates only:

- 32 to 64 characters of the base64 alphabet without padding (`[A-Za-z0-9+/]`):
  `-`, `_`, `.` or `=` make it something else (UUIDs, ids like `toolu_01...`,
  `sha512-...` integrity strings, JWTs, padded base64 digests);
- upper case, lower case and digits all present, and not only hex digits (git SHAs,
  digests and request ids are hex);
- detect-secrets' Shannon entropy of at least MIN_ENTROPY, and at most half of it in
  lower-case runs of three or more (`AbstractSingletonProxyFactoryBean2` is no key);
- not the base64 of text (a cursor or an encoded document: the decode layer reads it).

Not secrets here, by design (protocol randomness that travels to the site that minted
it): values of fields named like anti-forgery tokens, nonces, OAuth state and PKCE,
ETags, request / trace / correlation / idempotency ids, pagination cursors, WebSocket
keys; and cookie values (session ids go back to their site by design). A secret under
such a name is still found by every provider pattern and encoding; only this heuristic
looks away.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable

from scanner.verify import entropy, looks_like_placeholder

RULE = "high-entropy-value"
MIN_LEN, MAX_LEN = 32, 64
MIN_ENTROPY = 4.2
_MIN_DISTINCT = math.ceil(2**MIN_ENTROPY)
MAX_WORDY = 0.5  # share of the value in lower-case runs of 3+ letters (random: p99.9 0.45-0.56)
# An object member's whole string value of the alphabet (raw pass, jsontriggers.py). Members only:
# `"` alone starts the repeat at every string of a body (+0.2 ms per MB), `:` before it at values.
RAW_TRIGGER = r':[ \t\r\n]{0,4}"[A-Za-z0-9+/]{32,64}"'

_ALPHABET = bytes(
    1 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"+/") else 0 for c in range(256)
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_LOWER = bytes(1 if 97 <= c <= 122 else 0 for c in range(256))
# Field names whose values are protocol randomness, not credentials (lower case; substrings).
_EXEMPT_PARTS = ("csrf", "xsrf", "authenticity_token", "nonce", "etag", "if-none-match", "if-match",
                 "request-id", "request_id", "requestid", "trace", "correlation", "idempotency", "cursor",
                 "page_token", "pagetoken", "continuation", "sec-websocket-", "code_verifier",
                 "code_challenge")
_EXEMPT_NAMES = frozenset(("state", "_token", "csrfmiddlewaretoken", "x-amz-id-2"))


def exempt_name(name: str | None) -> bool:
    if not name:
        return False
    low = name.lower()
    return low in _EXEMPT_NAMES or any(part in low for part in _EXEMPT_PARTS)


def shape_ok(value: bytes) -> bool:
    """The cheap tests: length, alphabet, character classes, not hex, not words, enough distinct
    characters for the entropy (Shannon entropy is at most log2 of the distinct count)."""
    if not MIN_LEN <= len(value) <= MAX_LEN or value.translate(_ALPHABET).count(b"\x00"):
        return False
    if not (_has(value, 65, 90) and _has(value, 97, 122) and _has(value, 48, 57)) or _HEX.issuperset(value):
        return False
    return wordy(value) <= MAX_WORDY and len(set(value)) >= _MIN_DISTINCT


def is_bare_secret(value: bytes) -> bool:
    """The whole value is one random token of the base64 alphabet (see the module doc)."""
    if not shape_ok(value):
        return False
    text = value.decode("ascii")
    if looks_like_placeholder(text) or entropy(text) < MIN_ENTROPY:
        return False
    return not _encoded_text(value)


def _has(value: bytes, lo: int, hi: int) -> bool:
    return any(lo <= c <= hi for c in value)


def wordy(value: bytes) -> float:
    """Share of `value` in runs of three or more lower-case letters (words, not random characters)."""
    marks = value.translate(_LOWER)
    runs = [len(r) for r in marks.split(b"\x00") if len(r) >= 3]
    return sum(runs) / len(value)


def _encoded_text(value: bytes) -> bool:
    """base64 of mostly printable text (an encoded document or cursor, not key material)."""
    body = value[: len(value) // 4 * 4]
    try:
        raw = binascii.a2b_base64(body)
    except binascii.Error:
        return False
    printable = sum(1 for c in raw if 32 <= c < 127 or c in (9, 10, 13))
    return printable >= 0.9 * len(raw)


def json_candidates(doc: object, key_is_secret: Callable[[str], bool]) -> list[tuple[int, bytes]]:
    """(index among the document's string values, in document order; the value) of every object
    member's value in a parsed JSON document that has a bare secret's shape (the decoded view;
    the raw pass uses RAW_TRIGGER; the engine judges the rest, is_bare_secret)."""
    out: list[tuple[int, bytes]] = []
    index = 0
    stack: list[tuple[str | None, object]] = [(None, doc)]
    while stack:
        key, node = stack.pop()
        if type(node) is str:
            if key is not None and MIN_LEN <= len(node) <= MAX_LEN and not (exempt_name(key) or key_is_secret(key)):
                value = node.encode("utf-8", "surrogatepass")
                if shape_ok(value):
                    out.append((index, value))
            index += 1
        elif type(node) is dict:
            stack.extend(reversed(list(node.items())))  # type: ignore[union-attr]
        elif type(node) is list:
            stack.extend((None, v) for v in reversed(node))  # type: ignore[arg-type]
    return out
