"""The generic nested layer (scanner/nested.py): two and three layers over a token are found,
each with its clean control; the depth and byte bounds end in `invalid`, never a silent pass."""

from __future__ import annotations

import base64
import gzip
import json
import random

import pytest
import scanner_corpus as corpus

from scanner.core import Scanner
from scanner.request import ScanRequest

TOKEN = "ghp_" + "Zq8LmN2pR4sT6vW8xY0aB1cD3eF5gH" + "1oqNlv"  # valid CRC32
CLEAN_TOKEN = "ghp_" + "x" * 36  # a placeholder: not a secret
JSON = (("content-type", "application/json"),)


def scan(sc: Scanner, body: bytes = b"", url: str = "https://api.test/v1", headers=JSON):
    return sc.scan_request(ScanRequest(url=url, headers=headers, body=body))


def context(token: str) -> str:
    # long enough that no encoding of it is a lone 32-64 character value (the bare-value heuristic's shape)
    return f"# deploy settings\nexport REGION=eu-west-1\nexport GITHUB_TOKEN={token}\n"


def found(sc: Scanner, result) -> bool:
    return sc.fp(TOKEN.encode()) in {f.fingerprint for f in result.findings}


@pytest.mark.parametrize("name", corpus.NESTED_TRANSFORMS)
def test_nested_transform_found_and_control_clean(scanner: Scanner, name: str) -> None:
    hit = scan(scanner, corpus._messages(corpus.nested(name, context(TOKEN))))
    assert found(scanner, hit) and hit.verdict == "findings", name
    control = scan(scanner, corpus._messages(corpus.nested(name, context(CLEAN_TOKEN))))
    assert control.verdict == "clean", (name, [f.rule for f in control.findings], control.errors)


def test_transforms_are_named_outermost_first(scanner: Scanner) -> None:
    body = corpus._messages(corpus.nested("hex-of-gzip", f"t={TOKEN}\n"))
    assert [f.transforms for f in scan(scanner, body).findings] == [("hex", "gzip")]


def test_run_in_a_query_value_is_peeled_apart_from_its_neighbours(scanner: Scanner) -> None:
    """Request views join values without separators: a run is cut at its value's bounds."""
    inner = base64.b64encode(f"k={TOKEN}".encode()).hex()
    hit = scan(scanner, url=f"https://paste.test/p?lang=text&data={inner}&x=yz", headers=())
    assert found(scanner, hit) and {f.location for f in hit.findings} == {"url:query:data"}
    clean = base64.b64encode(f"k={CLEAN_TOKEN}".encode()).hex()
    assert scan(scanner, url=f"https://paste.test/p?lang=text&data={clean}&x=yz", headers=()).verdict == "clean"


def test_wrapped_base64_lines_are_one_run(scanner: Scanner) -> None:
    """76-column MIME lines (JSON-escaped newlines) of base64 of hex: one run, decoded whole."""
    for token, verdict in ((TOKEN, "findings"), (CLEAN_TOKEN, "clean")):
        text = base64.encodebytes(("x" * 300 + f"\nk={token}\n").encode().hex().encode()).decode()
        assert scan(scanner, corpus._messages(text)).verdict == verdict


def test_deeper_than_the_bound_is_invalid_not_clean(scanner: Scanner) -> None:
    def hex_n(text: str, n: int) -> str:
        for _ in range(n):
            text = text.encode().hex()
        return text

    for token in (TOKEN, CLEAN_TOKEN):
        deep = scan(scanner, corpus._messages(hex_n(f"k={token}\n", 6)))
        assert deep.verdict == "invalid" and [e.code for e in deep.errors] == ["nesting-too-deep"]
    assert scan(scanner, corpus._messages(hex_n(f"k={CLEAN_TOKEN}\n", 3))).verdict == "clean"
    assert found(scanner, scan(scanner, corpus._messages(hex_n(f"k={TOKEN}\n", 3))))


def test_stream_past_the_bomb_bounds_is_invalid_and_a_big_log_is_not(scanner: Scanner) -> None:
    """A stream in a run is bounded as a Content-Encoding body is: 200x its size, 64 MB."""
    bomb = base64.b64encode(gzip.compress(bytes(64 << 20), mtime=0)).decode()  # 64 MB of zeros, ~87 KB
    result = scan(scanner, corpus._messages(bomb))
    assert result.verdict == "invalid" and "decompression-bomb" in [e.code for e in result.errors]
    log = "".join(f"2026-11-30T10:{i % 60:02d}:00 INFO worker {i % 7} processed job {i} ok\n" for i in range(60_000))
    for token, verdict in ((CLEAN_TOKEN, "clean"), (TOKEN, "findings")):  # 3 MB inflated, the token at its end
        body = corpus._messages(base64.b64encode(gzip.compress(f"{log}k={token}\n".encode(), mtime=0)).decode())
        assert scan(scanner, body).verdict == verdict


def test_random_runs_and_images_stay_clean(scanner: Scanner) -> None:
    rng = random.Random(3)
    runs = [rng.randbytes(n).hex() for n in (20, 32, 64, 500)] + [base64.b64encode(rng.randbytes(n)).decode() for n in (30, 48, 3000)]
    assert scan(scanner, json.dumps({"values": runs}).encode()).verdict == "clean"
    image = corpus.claude_body(rng, 1_000_000, corpus._stdlib_sources(5), image=True)
    assert scan(scanner, image).verdict == "clean"
