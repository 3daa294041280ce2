"""The operator's real secret values (`--secrets-dir`): one value per file, file name = name.

Each value becomes literals for the matcher: the value, reversed, base64 / base32 /
hex forms, and overlapping fragments (so half a secret in one field or request and
half in another is still recognised). Values stay in this process's memory only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from scanner.encodings import Form, all_forms, base64_forms, hex_forms
from scanner.errors import ConfigError
from scanner.matcher import FingerprintLiteral

MIN_SECRET = 8  # shorter values would match ordinary text
FRAGMENT = 12  # a piece of this many bytes is recognised on its own
MAX_FRAGMENTS = 64

# Known providers' public prefixes and structure: the same in every key of that
# kind, so a fragment cut from them would flag any text naming the format (a
# README line with "sk-ant-api03-"). Fragments come only from what follows.
_PUBLIC_PART = re.compile(
    rb"^(?:"
    rb"sk-ant-[a-z]+[0-9]*-"  # Anthropic: sk-ant-api03-, sk-ant-oat01-, sk-ant-admin01-
    rb"|sk-(?:proj|svcacct|admin|None)-|sk-"  # OpenAI
    rb"|gh[pousr]_|github_pat_"  # GitHub
    rb"|xox[abeoprs]-(?:[0-9]+-)*|xapp-[0-9]+-[A-Z0-9]+-[0-9]+-"  # Slack (team and bot ids are not secret)
    rb"|A(?:KIA|SIA|GPA|IDA|ROA|IPA|NPA|NVA)"  # AWS key ids
    rb"|(?:sk|rk|pk)_(?:live|test)_|whsec_"  # Stripe
    rb"|glpat-|hf_|npm_|pypi-AgEIcHlwaS5vcmc|SG\.|AIza|dop_v1_|shp(?:at|ss|ca|pa)_|lin_api_"
    rb")"
)


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    value: bytes


@dataclass(frozen=True, slots=True)
class LoadResult:
    secrets: tuple[Secret, ...]
    skipped: tuple[str, ...]  # "name: reason", never the value
    signature: tuple[tuple[str, int, int], ...]


def signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector: names, sizes, mtimes (follows Kubernetes' ..data symlinks)."""
    out = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        if entry.is_file():
            out.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def load(directory: Path) -> LoadResult:
    if not directory.is_dir():
        raise ConfigError(f"secrets directory {directory} does not exist or is not a directory")
    sig = signature(directory)
    secrets, skipped = [], []
    for name, _, _ in sig:
        try:
            value = (directory / name).read_bytes().strip(b"\r\n")
        except OSError as exc:
            skipped.append(f"{name}: unreadable ({exc.strerror})")
            continue
        if len(value) < MIN_SECRET:
            skipped.append(f"{name}: shorter than {MIN_SECRET} bytes, would match ordinary text")
            continue
        secrets.append(Secret(name, value))
    return LoadResult(tuple(secrets), tuple(skipped), sig)


def secret_part(value: bytes) -> bytes:
    """``value`` without its provider's public prefix (the part only this secret has)."""
    match = _PUBLIC_PART.match(value)
    return value[match.end() :] if match else value


def fragments(value: bytes) -> list[bytes]:
    """Overlapping windows of the secret's own part (never of a public prefix)."""
    value = secret_part(value)
    if len(value) < FRAGMENT + 4:
        return []
    stride = max(1, (len(value) - FRAGMENT) // MAX_FRAGMENTS + 1)
    starts = list(range(0, len(value) - FRAGMENT + 1, stride))
    if starts[-1] != len(value) - FRAGMENT:
        starts.append(len(value) - FRAGMENT)
    return [value[i : i + FRAGMENT] for i in starts]


def second_layer_forms(value: bytes) -> list[Form]:
    """Base64 of base64, base64 of hex and hex of base64 of a whole value: its encoded text is long
    and specific, so the second encoding's determined runs are literals of their own. (Cheap for a
    few operator secrets; for every provider anchor it would multiply the rules' database.)"""
    b64 = [f.text for f in base64_forms(value)]
    hexed = [f.text for f in hex_forms(value) if not f.separator]  # plain hex, lower and upper case
    return [g for t in b64 + hexed for g in base64_forms(t, min_chars=MIN_SECRET)] + [g for t in b64 for g in hex_forms(t)]


def literals(secrets: tuple[Secret, ...]) -> list[FingerprintLiteral]:
    out: list[FingerprintLiteral] = []
    for s in secrets:
        for form in all_forms(s.value, plain=True) + second_layer_forms(s.value):
            out.append(FingerprintLiteral(s.name, form, fragment=False))
        for frag in fragments(s.value):
            out.append(FingerprintLiteral(s.name, Form(frag, "plain"), fragment=True))
            out.append(FingerprintLiteral(s.name, Form(frag[::-1], "reversed"), fragment=True))
    seen: set[bytes] = set()
    unique = []
    for lit in out:
        if lit.form.text not in seen and len(lit.form.text) >= MIN_SECRET:
            seen.add(lit.form.text)
            unique.append(lit)
    return unique
