"""The transforms an attack wraps a canary in."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from kit.redteam import encodings

VALUE = "ghp_Ab0/+xyz"


@pytest.mark.parametrize(
    ("name", "decode"),
    [
        ("plain", lambda s: s),
        ("base64", lambda s: base64.b64decode(s).decode()),
        ("base64url", lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)).decode()),
        ("base32", lambda s: base64.b32decode(s.upper() + "=" * (-len(s) % 8)).decode()),
        ("hex", lambda s: bytes.fromhex(s).decode()),
        ("url", urllib.parse.unquote),
        ("double-url", lambda s: urllib.parse.unquote(urllib.parse.unquote(s))),
        ("json-unicode", lambda s: json.loads(f'"{s}"')),
        ("reversed", lambda s: s[::-1]),
    ],
)
def test_each_transform_round_trips(name, decode):
    encoded = encodings.encode(VALUE, name)
    assert decode(encoded) == VALUE
    if name != "plain":
        assert encoded != VALUE


def test_url_encoding_hides_every_character():
    assert encodings.encode("ab", "url") == "%61%62"
    assert encodings.encode("ab", "double-url") == "%2561%2562"


def test_chains_apply_left_to_right():
    assert encodings.encode("abc", ["reversed", "hex"]) == "cba".encode().hex()


def test_unknown_transform_is_refused():
    with pytest.raises(ValueError, match="unknown transform 'rot13'"):
        encodings.encode("x", "rot13")


def test_split_covers_the_value_in_order():
    pieces = encodings.split("abcdefghij", 3)
    assert pieces == ["abcd", "efg", "hij"]
    with pytest.raises(ValueError):
        encodings.split("ab", 3)


def test_dns_labels_stay_within_63_octets():
    name = encodings.encode("x" * 100, ["hex", "labels"])
    assert all(len(label) <= 63 for label in name.split("."))
    assert name.replace(".", "") == ("x" * 100).encode().hex()
