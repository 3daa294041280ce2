"""Fragments of an operator's secret come from its own part, never from its provider's public prefix."""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path

import pytest

from scanner.config import ScannerConfig
from scanner.core import Scanner
from scanner.request import ScanRequest
from scanner.secretstore import FRAGMENT, fragments, secret_part

ALNUM = string.ascii_letters + string.digits


def _random(n: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


# (provider, public prefix, a value of that shape)
SHAPES = [
    ("anthropic", "sk-ant-api03-", f"sk-ant-api03-{_random(93)}AA"),
    ("github classic", "ghp_", f"ghp_{_random(36)}"),
    ("github fine-grained", "github_pat_", f"github_pat_{_random(22)}_{_random(59)}"),
    ("slack bot", "xoxb-123456789012-1234567890123-", f"xoxb-123456789012-1234567890123-{_random(24)}"),
    ("aws key id", "AKIA", f"AKIA{_random(16).upper()}"),
]


def _msg(text: str) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": text}]}).encode()


@pytest.mark.parametrize(("provider", "prefix", "value"), SHAPES, ids=[s[0] for s in SHAPES])
def test_fragments_skip_the_public_prefix(provider: str, prefix: str, value: str) -> None:
    assert secret_part(value.encode()) == value[len(prefix) :].encode()
    frags = fragments(value.encode())
    assert frags, provider
    assert all(f in value[len(prefix) :].encode() for f in frags)
    # No window reaches back into the prefix (the first one starts right after it).
    assert frags[0] == value[len(prefix) : len(prefix) + FRAGMENT].encode()


def test_a_value_of_no_known_shape_is_cut_whole() -> None:
    value = b"correct-horse-battery-staple-4711-Zx"
    assert secret_part(value) == value and fragments(value)[0] == value[:FRAGMENT]


@pytest.fixture(scope="module")
def bound(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scanner, dict[str, str]]:
    directory = tmp_path_factory.mktemp("secrets")
    values = {name.replace(" ", "-"): value for name, _, value in SHAPES}
    for name, value in values.items():
        (directory / name).write_text(value + "\n")
    return Scanner(ScannerConfig(secrets_dir=Path(directory), llm_guard_plugins=False)), values


def _rules(sc: Scanner, text: str) -> set[str]:
    return {f.rule for f in sc.scan_request(ScanRequest(headers=(("content-type", "application/json"),), body=_msg(text))).findings}


@pytest.mark.parametrize(("provider", "prefix", "value"), SHAPES, ids=[s[0] for s in SHAPES])
def test_the_prefix_alone_is_not_the_operators_secret(bound, provider: str, prefix: str, value: str) -> None:
    sc, _ = bound
    name = provider.replace(" ", "-")
    doc = f"Keys of this kind start with {prefix} followed by random characters: see the provider's docs."
    assert f"operator-secret:{name}" not in _rules(sc, doc)


@pytest.mark.parametrize(("provider", "prefix", "value"), SHAPES, ids=[s[0] for s in SHAPES])
def test_a_window_of_the_random_part_is_still_found(bound, provider: str, prefix: str, value: str) -> None:
    """The paired control: the same scanner, a piece of the secret's own part, alone in the text."""
    sc, _ = bound
    name = provider.replace(" ", "-")
    own = value[len(prefix) :]
    piece = own[len(own) // 2 - 8 : len(own) // 2 + 8]  # 16 characters from the middle, no prefix
    assert f"operator-secret:{name}" in _rules(sc, f"the log said {piece} and then stopped")
    assert f"operator-secret:{name}" in _rules(sc, f"the whole key: {value}")
