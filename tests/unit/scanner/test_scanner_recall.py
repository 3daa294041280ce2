"""Recall and false positives on the labelled corpus (tests/data/scanner_corpus.py).

A secret counts as found only when a finding carries its exact fingerprint (the
engine extracted that very value) or names the expected rule.
"""

from __future__ import annotations

from collections import Counter

import scanner_corpus as corpus

from scanner.core import Scanner
from scanner.request import ScanRequest


def test_recall_per_transform(scanner: Scanner) -> None:
    hit: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for s in corpus.secret_samples():
        result = scanner.scan_request(ScanRequest(url=s.url, headers=s.headers, body=s.body))
        fp = scanner.fp(s.secret.encode())
        total[s.transform] += 1
        hit[s.transform] += any(f.fingerprint == fp or f.rule == s.rule for f in result.findings)
    table = {t: hit[t] / total[t] for t in corpus.TRANSFORMS + corpus.NESTED_TRANSFORMS}
    print("\nrecall:", {t: f"{100 * r:.2f}%" for t, r in table.items()}, f"n={sum(total.values())}")
    assert set(total) == set(corpus.TRANSFORMS + corpus.NESTED_TRANSFORMS) and min(total.values()) >= 500
    assert min(table[t] for t in corpus.NESTED_TRANSFORMS) >= 0.99
    assert table["plain"] >= 0.995
    assert sum(hit[t] for t in corpus.ISSUE_TRANSFORMS) / sum(total[t] for t in corpus.ISSUE_TRANSFORMS) >= 0.97
    assert sum(hit.values()) / sum(total.values()) >= 0.97
    assert min(table.values()) >= 0.9


def test_every_provider_rule_has_corpus_samples() -> None:
    from scanner.rules import RULES

    assert {r.id for r in RULES} == set(corpus.FORMATS)


def test_benign_traffic_passes(scanner: Scanner) -> None:
    flagged: Counter[str] = Counter()
    total: Counter[str] = Counter()
    names = []
    for b in corpus.benign_samples():
        headers = ((("content-type", b.content_type),) if b.content_type else ()) + b.headers
        result = scanner.scan_request(ScanRequest(url=b.url, headers=headers, body=b.body))
        total[b.category] += 1
        if result.verdict != "clean":
            flagged[b.category] += 1
            names.append((b.name, [f.rule for f in result.findings], [e.code for e in result.errors]))
    print("\nbenign flagged:", dict(flagged), "of", dict(total), names)
    assert sum(total.values()) >= 100
    assert sum(flagged.values()) / sum(total.values()) <= 0.01
    for category in ("lockfile", "git-sha", "uuid", "image", "values", "nested"):
        assert total[category] and flagged[category] == 0, category
