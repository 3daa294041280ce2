"""The scanner as a library: `Scanner(config).scan_request(...)` / `.scan_text(...)`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from scanner import secretstore
from scanner.bodies import Limits as BodyLimits
from scanner.config import ScannerConfig
from scanner.engine import AgentMemory, Engine, Limits
from scanner.findings import Finding, Fingerprinter, ScanIssue
from scanner.matcher import Matcher, RuleSet
from scanner.request import ScanRequest, build
from scanner.rules import RULES, Rule
from scanner.segments import Part, View

log = logging.getLogger("scanner")

CLEAN, FINDINGS, INVALID = "clean", "findings", "invalid"


@dataclass(frozen=True, slots=True)
class Result:
    verdict: str
    findings: tuple[Finding, ...]
    errors: tuple[ScanIssue, ...]
    bytes_scanned: int
    scan_ms: float
    dropped: int = 0  # findings past the per-value and per-scan caps (metrics only, not in the answer)

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "findings": [f.to_json() for f in self.findings],
            "errors": [e.to_json() for e in self.errors],
            "bytes_scanned": self.bytes_scanned,
            "scan_ms": round(self.scan_ms, 3),
        }


def active_rules(cfg: ScannerConfig) -> tuple[Rule, ...]:
    rules = list(RULES)
    if cfg.llm_guard_plugins:
        from scanner.plugins import plugin_rules

        known = {r.id for r in rules}
        rules += [r for r in plugin_rules().rules if r.id not in known]
    disabled = set(cfg.disabled_rules)
    unknown = disabled - {r.id for r in rules}
    if unknown:
        from scanner.errors import ConfigError

        raise ConfigError(f"disabled_rules names unknown rules: {', '.join(sorted(unknown))}")
    return tuple(r for r in rules if r.id not in disabled)


class Scanner:
    def __init__(self, cfg: ScannerConfig) -> None:
        self.cfg = cfg
        self.fp, self.key_source = Fingerprinter.from_file(cfg.key_file)
        self.rules = active_rules(cfg)
        self.ruleset = RuleSet(self.rules)  # compiled once; a secrets reload reuses it
        self.memory = AgentMemory()
        self._lock = threading.Lock()
        self.loaded = secretstore.LoadResult((), (), ())
        if cfg.secrets_dir is not None:
            self.loaded = secretstore.load(cfg.secrets_dir)
        self.engine = self._build(self.loaded)
        self.reloads = 0

    def _build(self, loaded: secretstore.LoadResult) -> Engine:
        for skipped in loaded.skipped:
            log.warning("secret skipped: %s", skipped)
        matcher = Matcher(self.ruleset, secretstore.literals(loaded.secrets), {s.name: s.value for s in loaded.secrets})
        engine = Engine(matcher, self.fp, Limits(max_depth=self.cfg.max_depth))
        engine.memory = self.memory
        return engine

    def reload_if_changed(self) -> bool:
        """Rebuild the matcher when the secrets directory changed (atomic swap)."""
        if self.cfg.secrets_dir is None:
            return False
        try:
            sig = secretstore.signature(self.cfg.secrets_dir)
        except OSError as exc:
            log.error("secrets directory unreadable: %s", exc)
            return False
        if sig == self.loaded.signature:
            return False
        loaded = secretstore.load(self.cfg.secrets_dir)
        engine = self._build(loaded)
        with self._lock:
            self.loaded, self.engine = loaded, engine
            self.reloads += 1
        log.info("secrets reloaded: %d loaded, %d skipped", len(loaded.secrets), len(loaded.skipped))
        return True

    def scan_request(self, req: ScanRequest) -> Result:
        t0 = time.perf_counter()
        engine = self.engine
        built = build(req, BodyLimits(self.cfg.max_decoded_bytes, self.cfg.max_ratio), self.cfg.max_body_bytes)
        scan = engine.scan_view(built.view, built.keyed, agent=req.agent, alt=built.alt, raws=built.raws, bare_values=built.bare)
        issues = tuple(built.issues) + tuple(scan.issues)
        return _result(scan.findings.values(), issues, len(built.view.data) + sum(len(r.data) for r in built.raws), t0,
                       scan.dropped)

    def scan_text(self, text: str) -> tuple[Result, str]:
        """LLM-Guard style: findings and the text with every finding's span redacted."""
        t0 = time.perf_counter()
        view = View()
        view.add(Part([text], ["prompt"]))
        scan = self.engine.scan_view(view)
        result = _result(scan.findings.values(), tuple(scan.issues), len(view.data), t0)
        return result, _redact(view.data, scan.spans) if scan.findings else text


def _result(findings, issues: tuple[ScanIssue, ...], scanned: int, t0: float, dropped: int = 0) -> Result:
    findings = tuple(findings)
    verdict = INVALID if issues else FINDINGS if findings else CLEAN
    return Result(verdict, findings, issues, scanned, (time.perf_counter() - t0) * 1000, dropped)


def _redact(data: bytes, spans: list[tuple[int, int]]) -> str:
    """Replace every finding's span (for an encoded secret: its whole decoded window)."""
    out, pos = bytearray(), 0
    for s, e in sorted(sp for sp in spans if sp[1] > sp[0]):
        if e <= pos:
            continue
        out += data[pos:max(s, pos)] + b"******"
        pos = e
    out += data[pos:]
    return out.decode("utf-8", "replace")
