"""The raw JSON pass (scanner/rawjson.py) against the decoded view it replaces.

The decoded view (every JSON string value decoded up front, `build(raw_json=False)`) is
the reference: for each body below, the raw pass must report the same findings (rule,
secret fingerprint, location, transforms). Plugin rules are compared without the
fingerprint: some of their patterns end in `.{1,256}`, so the value they capture runs
to the edge of whatever buffer holds it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
import scanner_corpus as corpus

from scanner.bodies import Limits
from scanner.core import Scanner
from scanner.decoders import unescape
from scanner.rawjson import RawJson, Window
from scanner.request import ScanRequest, build

JSON = (("content-type", "application/json"),)
TOKEN = "ghp_" + "Zq8LmN2pR4sT6vW8xY0aB1cD3eF5gH7jK9mQ"


def findings(sc: Scanner, body: bytes, raw: bool, url: str = "https://api.test/v1", headers=JSON):
    req = ScanRequest(url=url, headers=headers, body=body)
    built = build(req, Limits(sc.cfg.max_decoded_bytes, sc.cfg.max_ratio), sc.cfg.max_body_bytes, raw_json=raw)
    scan = sc.engine.scan_view(built.view, built.keyed, alt=built.alt, raws=built.raws, bare_values=built.bare)
    found = {(f.rule, "" if ":" in f.rule and f.source == "pattern" else f.fingerprint, f.location, f.transforms)
             for f in scan.findings.values()}
    return sorted(found), sorted(i.code for i in [*built.issues, *scan.issues])


def _edge_cases() -> Iterator[tuple[str, bytes]]:
    """Bodies where raw bytes and decoded values differ: splits, escapes, keys, big bodies."""
    filler = corpus.claude_body(random.Random(1), 30_000, corpus._stdlib_sources(10))
    rng = random.Random(5)
    for rule, (gen, template) in sorted(corpus.FORMATS.items()):
        token = gen(random.Random(rule))
        ctx = template.format(s=token)
        start = ctx.index(token)
        for cut in [*range(start + 1, start + min(len(token), 14)), start + len(token) // 2]:
            blocks = [{"type": "text", "text": ctx[:cut]}, {"type": "text", "text": ctx[cut:]}]
            yield f"{rule} split@{cut - start}", json.dumps({"messages": [{"content": blocks}]}).encode()
            yield f"{rule} split-far@{cut - start}", json.dumps({"a": ctx[:cut], "n": list(range(300)), "k": True, "b": ctx[cut:]}).encode()
        for i in range(start, min(len(ctx), start + 20)):
            head = json.dumps({"x": ctx[:i]})[:-2]
            yield f"{rule} escaped@{i - start}", (head + "\\u%04x" % ord(ctx[i]) + json.dumps(ctx[i + 1 :])[1:] + "}").encode()
        yield f"{rule} php-slashes", json.dumps({"x": ctx}).replace("/", "\\/").encode()
        yield f"{rule} ensure-ascii", json.dumps({"x": "é " + ctx + " ü"}).encode()
        at = filler.index(b'"', rng.randrange(len(filler) - 100)) + 1
        yield f"{rule} in-1MB-filler", filler[:at] + json.dumps(ctx).encode()[1:-1] + filler[at:]
        yield f"{rule} as-key", json.dumps({ctx: 1, "v": "x"}).encode()
        yield f"{rule} nested-json", json.dumps({"a": json.dumps({"b": ctx})}).encode()
    for value in ("p\u00e4ssw\u00f6rd-Xk9#mP2$", "Xk9&mP2<vL8>qRt4w", "Xk9mP2vL8qRt4wZ7"):
        for template in ('password = "{v}"', 'password =\t"{v}"', "DB_PASSWORD={v}", "db_password: {v}"):
            text = template.format(v=value)
            yield f"keyword {text!r}", json.dumps({"x": text}, ensure_ascii=False).encode()
            yield f"keyword ascii {text!r}", json.dumps({"x": text}).encode()
            yield f"keyword go-escapes {text!r}", json.dumps({"x": text}).replace("&", "\\u0026").replace("<", "\\u003c").encode()
            for cut in range(1, len(text)):
                yield f"keyword split@{cut} {text!r}", json.dumps([{"type": "text", "text": text[:cut]}, {"type": "text", "text": text[cut:]}]).encode()
    for name in ("client_secret", "X-Api-Key", "refresh_token"):
        yield f"keyed {name}", json.dumps({"other": 1, name: "Xk9mP2vL8qRt4wZ7"}).encode()
        escaped = "".join("\\u%04x" % ord(c) for c in name)
        yield f"keyed escaped {name}", ('{"other": 1, "' + escaped + '": "Xk9mP2vL8qRt4wZ7"}').encode()


EDGE_CASES = list(_edge_cases())


def test_edge_cases_match_the_decoded_view(scanner: Scanner) -> None:
    diffs = []
    for name, body in EDGE_CASES:
        raw, decoded = findings(scanner, body, True), findings(scanner, body, False)
        if raw != decoded:
            diffs.append((name, raw, decoded))
    assert len(EDGE_CASES) > 3000
    assert not diffs, f"{len(diffs)} of {len(EDGE_CASES)} differ, first: {diffs[:3]}"


def test_corpus_matches_the_decoded_view(scanner: Scanner) -> None:
    diffs = []
    for s in corpus.secret_samples(per_rule=2, seed=99):
        raw = findings(scanner, s.body, True, s.url, s.headers)
        if raw != findings(scanner, s.body, False, s.url, s.headers):
            diffs.append((s.rule, s.transform))
        assert raw[0], (s.rule, s.transform)
    for b in corpus.benign_samples():
        raw = findings(scanner, b.body, True, headers=(("content-type", b.content_type),))
        assert raw == findings(scanner, b.body, False, headers=(("content-type", b.content_type),)) == ([], []), b.name
    assert not diffs, diffs


def test_duplicate_keys_are_all_scanned(scanner: Scanner) -> None:
    """orjson keeps the last of two equal keys, so the decoded view never saw the first value."""
    body = ('{"a": "' + TOKEN + '", "a": "x"}').encode()
    assert findings(scanner, body, False) == ([], [])
    assert [(f[0], f[2]) for f in findings(scanner, body, True)[0]] == [("github-token", "body")]
    assert findings(scanner, b'{"a": "y", "a": "x"}', True) == ([], [])


def test_php_style_slashes_decode_the_whole_body(scanner: Scanner) -> None:
    key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".replace("EXAMPLE", "Zq8Lm2T")
    body = json.dumps({"env": f"aws_secret_access_key = {key}"}).replace("/", "\\/").encode()
    assert b"\\/" in body and key.encode() not in body
    assert findings(scanner, body, True)[0][0][:1] == ("aws-secret-access-key",)
    assert findings(scanner, json.dumps({"env": "path a\\/b"}).encode(), True) == ([], [])


# --- the raw structure helpers ---------------------------------------------------------


def test_pieces_find_strings_keys_and_values_around_escapes() -> None:
    doc = {"k\"1": "a\\\"b", "list": ["", "x\\\\", 12, "\u00e9\U0001f600"], "z": {"n": None, "s": "end"}}
    data = json.dumps(doc).encode()  # ASCII: the emoji is the escaped pair \ud83d\ude00
    raw = RawJson(data, "body:")
    values = [v.encode() for v in ("a\\\"b", "", "x\\\\", "\u00e9\U0001f600", "end")]
    local = raw.pieces(Window(0, len(data)))
    assert [raw.decode(p.lo, p.hi) for p in local.values] == values
    assert [raw.decode(p.lo, p.hi) for p in local.keys] == [b'k"1', b"list", b"z", b"n", b"s"]
    assert [raw.location(p) for p in local.values] == ["body:$.<name>", "body:$.list[0]", "body:$.list[1]",
                                                        "body:$.list[3]", "body:$.z.s"]
    assert [raw.location(p) for p in local.keys] == ["keys"] * 5
    for lo in range(len(data)):  # a window starting anywhere: the strings after its first are whole
        got = [raw.decode(p.lo, p.hi) for p in raw.pieces(Window(lo, len(data))).values]
        assert got[1:] == values[len(values) - len(got) + 1 :], (lo, got)


def test_windows_never_cut_an_escape() -> None:
    data = json.dumps({"a": "\u00e9" * 50 + "\\" * 7 + "\ud83d\ude00" * 20}).encode()
    raw = RawJson(data, "body:")
    for lo in range(len(data)):
        for p in raw.pieces(Window(lo, min(len(data), lo + 37))).values:
            raw.decode(p.lo, p.hi)  # never raises: a cut escape would be invalid JSON
    assert unescape(b"\\ud83d \\/ \\x41", json=True) == "\ud83d / \\x41".encode("utf-8", "surrogatepass")


def test_location_is_the_json_path_of_the_value(scanner: Scanner) -> None:
    body = json.dumps({"messages": [{"content": [{"type": "text", "text": "x"}, {"type": "tool_result", "content": f"t {TOKEN}"}]}]}).encode()
    assert [(f[0], f[2]) for f in findings(scanner, body, True)[0]] == [("github-token", "body:$.messages[0].content[1].content")]


@pytest.mark.parametrize("body", [
    b'"' + TOKEN.encode() + b'"',  # a bare string document
    b'[1, 2, "' + TOKEN.encode() + b'"]',
    b'{"a": {"b": [{"c": "' + TOKEN.encode() + b'"}]}}',
])
def test_any_json_shape(scanner: Scanner, body: bytes) -> None:
    raw = findings(scanner, body, True)
    assert raw == findings(scanner, body, False) and raw[0][0][0] == "github-token"
