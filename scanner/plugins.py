"""llm-guard's and detect-secrets' provider regexes, compiled into the linear-time engine.

llm-guard ships its secret detectors as plain detect-secrets plugin files
(`llm_guard/input_scanners/secrets_plugins/*.py`). Importing the `llm_guard`
package runs its init, which imports every scanner (torch, transformers,
presidio), so the files are loaded by path, as detect-secrets itself loads
custom plugins: each module only imports `detect_secrets.plugins.base`.
detect-secrets' own regex plugins are read from the installed package.

Each plugin's `denylist` regexes are translated (Python flags -> inline flags)
and kept only if both hyperscan and RE2 accept them; the rest are listed in
`PluginRules.skipped` with the reason (tests/unit/scanner/test_scanner_plugins.py
pins that list, so a plugin upgrade that drops coverage fails a test). Detection
then runs in our engine: one hyperscan pass, RE2 extraction.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import hyperscan
import re2
from detect_secrets.plugins.base import RegexBasedDetector

from scanner.rules import Rule

# Detectors left out by design: keyword-only patterns with no token structure
# (a keyword near any 40-64 character value). Our own keyword heuristic covers
# that case with entropy and placeholder checks (scanner/verify.py).
NOISY = {
    "detect-secrets:IbmCloudIamDetector": "keyword-only: `ibm...api_key` near any 44 characters",
    "detect-secrets:SoftlayerDetector": "keyword-only: `softlayer`/`sl` near any 64 characters",
    "detect-secrets:CloudantDetector": "keyword-only: `cloudant`/`cl` near any hex or 64 characters",
}


@dataclass(frozen=True, slots=True)
class PluginRules:
    rules: tuple[Rule, ...]
    skipped: tuple[tuple[str, str], ...]  # (rule id, reason)
    loaded_files: tuple[str, ...]


def llm_guard_plugin_dir() -> Path | None:
    spec = importlib.util.find_spec("llm_guard")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "input_scanners" / "secrets_plugins"
    return path if path.is_dir() else None


def _load_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"yolo_cage_llmguard_plugin_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _detectors(module: ModuleType) -> list[type[RegexBasedDetector]]:
    return [c for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, RegexBasedDetector) and c is not RegexBasedDetector and c.__module__ == module.__name__]


MAX_DOTS = 256  # an unbounded `.*` / `.+` is bounded to this many characters


def bound_dots(expr: str) -> str:
    """`.*` / `.+` (outside classes) -> `.{0,256}` / `.{1,256}`.

    Hyperscan reports every end offset of a match: `_authToken=.*` would report each byte
    to the end of the line, and raw JSON has no line ends (`\\n` is escaped), so one
    `.npmrc` line would exhaust the candidate cap of a whole body."""
    out: list[str] = []
    i, n, in_class = 0, len(expr), False
    while i < n:
        c = expr[i]
        if c == "\\":
            out.append(expr[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if expr[i + 1 : i + 2] == "]" or expr[i + 1 : i + 3] == "^]":
                out.append(expr[i : i + (2 if expr[i + 1] == "]" else 3)])  # a `]` first is literal
                i += len(out[-1])
                continue
        elif c == "." and i + 1 < n and expr[i + 1] in "*+":
            out.append(".{0,%d}" % MAX_DOTS if expr[i + 1] == "*" else ".{1,%d}" % MAX_DOTS)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def unverbose(expr: str) -> str:
    """A verbose (`re.X`) pattern without its layout: white space and `#` comments outside classes
    and escapes dropped. RE2 has no verbose mode (it refused detect-secrets' Slack webhook pattern)."""
    out: list[str] = []
    i, n, in_class = 0, len(expr), False
    while i < n:
        c = expr[i]
        if c == "\\":
            out.append(expr[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c.isspace():
            i += 1
            continue
        elif c == "#":
            end = expr.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def translate(pattern: re.Pattern[str]) -> str:
    flags = ""
    if pattern.flags & re.IGNORECASE:
        flags += "i"
    if pattern.flags & re.DOTALL:
        flags += "s"
    if pattern.flags & re.MULTILINE:
        flags += "m"
    expr = unverbose(pattern.pattern) if pattern.flags & re.VERBOSE else pattern.pattern
    return (f"(?{flags})" if flags else "") + bound_dots(expr)


def why_not(expr: str) -> str | None:
    """None when both linear-time engines take the pattern, else the reason.

    hyperscan is asked first: RE2 logs its refusals to stderr, hyperscan does not."""
    try:
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(expressions=[expr.encode()], ids=[0], elements=1, flags=[0])
    except hyperscan.error as exc:
        return f"hyperscan: {exc}"
    try:
        re2.compile(expr.encode())
    except Exception as exc:  # re2 raises its own error type
        return f"RE2: {exc}"
    return None


def _rules_from(prefix: str, cls: type[RegexBasedDetector], rules: list[Rule], skipped: list[tuple[str, str]]) -> None:
    base = f"{prefix}:{cls.__name__}"
    if base in NOISY:
        skipped.append((base, NOISY[base]))
        return
    try:
        denylist = list(cls().denylist)
    except Exception as exc:
        skipped.append((base, f"cannot instantiate: {exc}"))
        return
    for i, pattern in enumerate(denylist):
        rid = f"{base}:{i}"
        expr = translate(pattern)
        reason = why_not(expr)
        if reason:
            skipped.append((rid, reason))
        else:
            rules.append(Rule(rid, expr, prefix=False, max_len=512, min_entropy=3.0, source="pattern",
                              description=f"{prefix} plugin {cls.__name__}"))


@lru_cache(maxsize=1)
def plugin_rules() -> PluginRules:
    rules: list[Rule] = []
    skipped: list[tuple[str, str]] = []
    files: list[str] = []
    import detect_secrets.plugins as ds_plugins

    for path in sorted(Path(ds_plugins.__file__).parent.glob("*.py")):
        if path.stem in ("__init__", "base"):
            continue
        module = importlib.import_module(f"detect_secrets.plugins.{path.stem}")
        for cls in _detectors(module):
            _rules_from("detect-secrets", cls, rules, skipped)
    plugin_dir = llm_guard_plugin_dir()
    if plugin_dir is not None:
        for path in sorted(plugin_dir.glob("*.py")):
            if path.stem == "__init__":
                continue
            files.append(path.name)
            for cls in _detectors(_load_file(path)):
                _rules_from("llm-guard", cls, rules, skipped)
    return PluginRules(tuple(rules), tuple(skipped), tuple(files))
