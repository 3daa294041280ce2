"""Scanner benchmark: this engine vs detect-secrets vs llm-guard's Secrets scanner, same bodies, one run.

Run: `uv run invoke bench.scanner` (or `uv run python bench/scanner_bench.py --quick`).

- Speed: MB/s and p50/p99 ms on clean Claude-Code-like Messages bodies of 100 KB and 1 MB.
- Recall per transform on the labelled corpus (tests/data/scanner_corpus.py), and the benign
  corpus's requests this scanner flags.
- Pattern layer: hyperscan database vs an RE2 set over the same provider patterns.

llm-guard: its `Secrets.scan` method runs unmodified, loaded from its file by path.
Importing the `llm_guard` package is impossible here by design (its init imports
torch/transformers/presidio, not installed), so three imports of that file are
stubbed: the package logger, the `Scanner` base class (an empty protocol), and
presidio's `TextReplaceBuilder` (a 20-line equivalent below, only used to redact).
detect-secrets runs exactly as llm-guard configures it (same plugin list, files by path).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import os
import statistics
import sys
import time
import types
from collections import Counter
from pathlib import Path
import random

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "data"))

import scanner_corpus as corpus  # noqa: E402

from scanner.config import ScannerConfig  # noqa: E402
from scanner.core import Scanner  # noqa: E402
from scanner.request import ScanRequest  # noqa: E402

JSON = (("content-type", "application/json"),)


class _TextReplaceBuilder:
    """Equivalent of presidio_anonymizer's TextReplaceBuilder (only what Secrets.scan calls)."""

    def __init__(self, original_text: str) -> None:
        self.output_text = original_text
        self._shift = 0

    def get_text_in_position(self, start: int, end: int) -> str:
        return self.output_text[start + self._shift:end + self._shift]

    def replace_text_get_insertion_index(self, replacement: str, start: int, end: int) -> int:
        s, e = start + self._shift, end + self._shift
        self.output_text = self.output_text[:s] + replacement + self.output_text[e:]
        self._shift += len(replacement) - (end - start)
        return s


def load_llm_guard_secrets():
    """llm_guard/input_scanners/secrets.py, loaded by path with its three heavy imports stubbed."""
    from scanner.plugins import llm_guard_plugin_dir

    plugin_dir = llm_guard_plugin_dir()
    assert plugin_dir is not None, "llm-guard is not installed"
    path = plugin_dir.parent / "secrets.py"
    pkg = types.ModuleType("llm_guard")
    pkg.__path__ = [str(plugin_dir.parent.parent)]
    sub = types.ModuleType("llm_guard.input_scanners")
    sub.__path__ = [str(plugin_dir.parent)]
    util = types.ModuleType("llm_guard.util")
    util.get_logger = lambda *a, **k: logging.getLogger("llm_guard")
    base = types.ModuleType("llm_guard.input_scanners.base")
    base.Scanner = type("Scanner", (), {})
    presidio = types.ModuleType("presidio_anonymizer.core.text_replace_builder")
    presidio.TextReplaceBuilder = _TextReplaceBuilder
    for name, mod in {"llm_guard": pkg, "llm_guard.input_scanners": sub, "llm_guard.util": util,
                      "llm_guard.input_scanners.base": base, "presidio_anonymizer": types.ModuleType("presidio_anonymizer"),
                      "presidio_anonymizer.core": types.ModuleType("presidio_anonymizer.core"),
                      "presidio_anonymizer.core.text_replace_builder": presidio}.items():
        sys.modules.setdefault(name, mod)
    spec = importlib.util.spec_from_file_location("llm_guard.input_scanners.secrets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Engines:
    def __init__(self) -> None:
        self.ours = Scanner(ScannerConfig())
        lg = load_llm_guard_secrets()
        self.llm_guard = lg.Secrets()
        self._ds_config = lg._default_detect_secrets_config

    def run_ours(self, body: bytes, url: str = "https://api.test/v1/messages", headers=JSON) -> bool:
        return self.ours.scan_request(ScanRequest(url=url, headers=headers, body=body)).verdict != "clean"

    def run_llm_guard(self, body: bytes, url: str = "", headers=()) -> bool:
        text = (url + "\n" + body.decode("utf-8", "replace")).strip()
        return not self.llm_guard.scan(text)[1]

    def run_detect_secrets(self, body: bytes, url: str = "", headers=()) -> bool:
        import os
        import tempfile

        from detect_secrets.core.secrets_collection import SecretsCollection
        from detect_secrets.settings import transient_settings

        with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as fh:
            fh.write((url + "\n").encode() + body)
        try:
            secrets = SecretsCollection()
            with transient_settings(self._ds_config):
                secrets.scan_file(fh.name)
            return any(True for f in secrets.files for _ in secrets[f])
        finally:
            os.remove(fh.name)


def timing(fn, body: bytes, runs: int) -> dict[str, float]:
    """Wall-clock (what a request waits) and the thread's CPU time (the engine's own work: on a
    shared 2-core machine, wall-clock p99 is mostly other processes preempting the scan)."""
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn(body)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    p50, p99 = _p(wall, 0.5), _p(wall, 0.99)
    return {"mb_s": len(body) / 1e6 / p50, "p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "runs": runs,
            "cpu_p50_ms": _p(cpu, 0.5) * 1000, "cpu_p99_ms": _p(cpu, 0.99) * 1000}


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return statistics.median(values) if q == 0.5 else values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def pattern_layer(sizes: dict[str, bytes]) -> None:
    import hyperscan
    import re2

    from scanner.rules import RULES

    pats = [r.pattern for r in RULES]
    db = hyperscan.Database()
    db.compile(expressions=[p.encode() for p in pats], ids=list(range(len(pats))), elements=len(pats), flags=[0] * len(pats))
    rset = re2.Set.SearchSet()
    for p in pats:
        rset.Add(p.encode())
    rset.Compile()
    print("\n## pattern layer: hyperscan vs RE2 set (the same", len(pats), "provider patterns, clean body)")
    print("| body | hyperscan p50 ms | RE2 set p50 ms | ratio |")
    print("| --- | --- | --- | --- |")
    for name, body in sizes.items():
        hs = timing(lambda b: db.scan(b, match_event_handler=lambda *a: None), body, 30)
        r2 = timing(lambda b: rset.Match(b), body, 10)
        print(f"| {name} | {hs['p50_ms']:.2f} | {r2['p50_ms']:.2f} | RE2 {r2['p50_ms'] / hs['p50_ms']:.1f}x slower |")


def benign_flagged(eng: Engines) -> None:
    """Ours on the benign corpus, each sample as the request it is (URL, headers, body)."""
    flagged: Counter = Counter()
    total: Counter = Counter()
    for b in corpus.benign_samples():
        headers = ((("content-type", b.content_type),) if b.content_type else ()) + b.headers
        total[b.category] += 1
        flagged[b.category] += eng.run_ours(b.body, b.url, headers)
    print("\n## benign corpus: requests flagged by this scanner")
    print("| category | flagged | samples |")
    print("| --- | --- | --- |")
    for category in sorted(total):
        print(f"| {category} | {flagged[category]} | {total[category]} |")
    print(f"| all | {sum(flagged.values())} | {sum(total.values())} |")


def _conditions() -> str:
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load} (1/5/15 min)"


def excluded_detectors(quick: bool) -> None:
    """What the three keyword-only detect-secrets detectors left out of our rules would flag.

    Run by detect-secrets itself (its default filters on), one detector at a time, over the
    benign corpus and the plain secret samples (where a hit is only the detector firing, not a
    secret of its provider: our corpus has no IBM, SoftLayer or Cloudant credentials)."""
    import tempfile

    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import transient_settings

    from scanner.plugins import NOISY

    benign = list(corpus.benign_samples())
    plain = [s for s in corpus.secret_samples(per_rule=1 if quick else 2) if s.transform == "plain"]
    ours = Scanner(ScannerConfig())
    rng = random.Random(3)
    print("\n## detect-secrets detectors left out (scanner/plugins.py NOISY): what they flag")
    print("| detector | benign bodies flagged | plain secret samples it fires on | its own format: it / we find it |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for rule_id in sorted(NOISY):
            name = rule_id.split(":")[1]
            flagged: Counter = Counter()
            own = _OWN_FORMAT[name](rng).encode()
            with transient_settings({"plugins_used": [{"name": name}]}):
                for i, b in enumerate(benign):
                    flagged[b.category] += _ds_flags(SecretsCollection, tmp, i, b.body)
                fired = sum(_ds_flags(SecretsCollection, tmp, i, s.body) for i, s in enumerate(plain))
                found_by_it = _ds_flags(SecretsCollection, tmp, 0, own)
            found_by_us = ours.scan_request(ScanRequest(body=own)).verdict == "findings"
            cats = " (" + ", ".join(f"{c} {n}" for c, n in sorted(flagged.items()) if n) + ")" if sum(flagged.values()) else ""
            print(f"| {name} | {sum(flagged.values())} of {len(benign)}{cats} | {fired} of {len(plain)} "
                  f"| {'yes' if found_by_it else 'no'} / {'yes' if found_by_us else 'no'} |")


def _rand(rng: random.Random, chars: str, n: int) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


# A credential of each left-out detector's provider, as a config file holds it (the measurement's control).
_OWN_FORMAT = {
    "CloudantDetector": lambda r: f'cloudant_password = "{_rand(r, "0123456789abcdef", 64)}"\n',
    "IbmCloudIamDetector": lambda r: f"ibm_cloud_iam_api_key: {_rand(r, corpus.A + '_-', 44)}\n",
    "SoftlayerDetector": lambda r: f'softlayer_api_key = "{_rand(r, "abcdefghijklmnopqrstuvwxyz0123456789", 64)}"\n',
}


def _ds_flags(collection_type, tmp: str, i: int, body: bytes) -> int:
    path = os.path.join(tmp, f"b{i}.txt")
    with open(path, "wb") as fh:
        fh.write(body)
    secrets = collection_type()
    secrets.scan_file(path)
    return int(any(True for f in secrets.files for _ in secrets[f]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer runs and samples (minutes -> under a minute for ours)")
    ap.add_argument("--only-ours", action="store_true", help="this engine only (compare two versions of it)")
    ap.add_argument("--excluded", action="store_true", help="with --only-ours: still measure the left-out detect-secrets detectors")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    rng = random.Random(11)
    sources = corpus._stdlib_sources(80)
    bodies = {"100 KB": corpus.claude_body(rng, 100_000, sources), "1 MB": corpus.claude_body(rng, 1_000_000, sources)}
    eng = Engines()
    # As the service does once it is ready (scanner/__main__.py): the engines' long-lived heap
    # leaves the collector's generations, so a full collection does not walk it mid-scan.
    gc.freeze()
    runs = {"ours": 200, "detect-secrets": 3, "llm-guard": 3} if not args.quick else {"ours": 100, "detect-secrets": 1, "llm-guard": 1}
    fns = {"ours": eng.run_ours, "detect-secrets": eng.run_detect_secrets, "llm-guard": eng.run_llm_guard}
    if args.only_ours:
        fns = {"ours": eng.run_ours}
    print(f"# scanner benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {sys.platform}, python {sys.version.split()[0]})")
    print(f"machine at start: {_conditions()}")
    print("\n## speed on clean Claude-Code-like Messages bodies (single thread)")
    print("| engine | body | MB/s | p50 ms | p99 ms | CPU p50 / p99 ms | runs | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    p50 = {}
    for name, fn in fns.items():
        for label, body in bodies.items():
            fn(body)  # warm-up
            t = timing(fn, body, runs[name])
            p50[(name, label)] = t["p50_ms"]
            verdict = "flagged" if fn(body) else "clean"
            print(f"| {name} | {label} ({len(body)} B) | {t['mb_s']:.2f} | {t['p50_ms']:.2f} | {t['p99_ms']:.2f} "
                  f"| {t['cpu_p50_ms']:.2f} / {t['cpu_p99_ms']:.2f} | {t['runs']} | {verdict} |")
    for label in bodies:
        for other in (n for n in fns if n != "ours"):
            print(f"speed ratio {label}: ours is {p50[(other, label)] / p50[('ours', label)]:.0f}x faster than {other}")
    print("\n## recall per transform (corpus: every provider format, per_rule samples each)")
    per_rule = 1 if args.quick else 2
    hit: Counter = Counter()
    total: Counter = Counter()
    for s in corpus.secret_samples(per_rule=per_rule):
        total[s.transform] += 1
        for name, fn in fns.items():
            hit[(name, s.transform)] += fn(s.body, s.url, s.headers)
    print("| transform | n | " + " | ".join(fns) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in fns) + " |")
    transforms = corpus.TRANSFORMS + corpus.NESTED_TRANSFORMS  # nested: two and three layers
    for t in transforms:
        print(f"| {t} | {total[t]} | " + " | ".join(f"{100 * hit[(n, t)] / total[t]:.1f}%" for n in fns) + " |")
    n = sum(total.values())
    print(f"| all | {n} | " + " | ".join(f"{100 * sum(hit[(k, t)] for t in transforms) / n:.1f}%" for k in fns) + " |")
    benign_flagged(eng)
    pattern_layer(bodies)
    if args.excluded or not args.only_ours:
        excluded_detectors(args.quick)
    print(f"\nmachine at end: {_conditions()}")


if __name__ == "__main__":
    main()
