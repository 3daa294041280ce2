"""Adversarial inputs: scan time grows linearly with size (ratios of sizes, not absolute times).

Each input is timed at 1x and 4x its size (best of 3, robust to a noisy machine);
a linear engine takes about 4x as long, a quadratic one 16x. We allow up to 8x.
Inputs that exhaust the decode budget or the candidate-hit cap must end as `invalid`,
never a pass or a hang.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from scanner.core import Scanner
from scanner.request import ScanRequest

KB = 1024


def _prefixes(n: int) -> bytes:
    return json.dumps({"a": ("ghp_" * (n // 4))}).encode()


def _prefix_fields(n: int) -> bytes:
    return json.dumps([("sk-ant-api03-" + "A" * 10)] * (n // 30)).encode()


def _b64_alphabet(n: int) -> bytes:
    alpha = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return b'{"a": "' + (alpha * (n // 64 + 1))[:n] + b'"}'


def _encoded_anchors(n: int) -> bytes:
    unit = base64.b64encode(b"ghp_") + b"Z2hwX" + b"6768705f" + b"_phg"
    return (unit * (n // len(unit) + 1))[:n]


def _percent(n: int) -> bytes:
    return (b"%67%68%70%5f" * (n // 12 + 1))[:n]


def _nested(n: int) -> bytes:
    data = b"ghp_" + b"A" * 36
    while len(data) < n:
        data = base64.b64encode(data[: n // 2] + data[: n // 2][::-1])
    return data[:n]


INPUTS = {"prefixes": _prefixes, "prefix-fields": _prefix_fields, "b64-alphabet": _b64_alphabet,
          "encoded-anchors": _encoded_anchors, "percent-escapes": _percent, "nested-base64": _nested}


def _best(scanner: Scanner, body: bytes) -> tuple[float, str]:
    best, verdict = float("inf"), ""
    for _ in range(3):
        t0 = time.perf_counter()
        result = scanner.scan_request(ScanRequest(headers=(("content-type", "application/json"),), body=body))
        best = min(best, time.perf_counter() - t0)
        verdict = result.verdict
    return best, verdict


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_scan_time_is_linear(scanner: Scanner, name: str) -> None:
    make = INPUTS[name]
    small, _ = _best(scanner, make(256 * KB))
    large, verdict = _best(scanner, make(1024 * KB))
    ratio = large / max(small, 1e-4)
    print(f"\n{name}: 256KB {small * 1000:.1f} ms, 1MB {large * 1000:.1f} ms, ratio {ratio:.1f} ({verdict})")
    assert ratio < 8, f"{name}: 4x the input took {ratio:.1f}x the time"
    assert verdict in ("clean", "findings", "invalid")
