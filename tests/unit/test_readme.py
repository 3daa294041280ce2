"""README.md's quickstart, settings example and configuration table cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from kit import settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def commands(block_text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block_text.splitlines() if line.strip()]


def test_quickstart_is_exactly_two_commands_up_then_test() -> None:
    blocks = re.findall(r"```console\n(.*?)```", section("Quickstart"), re.S)
    assert len(blocks) == 1
    assert commands(blocks[0]) == ["uv run invoke up", "uv run invoke test"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    runs = [line.strip() for line in script.splitlines() if line.strip().startswith("uv run invoke")]
    assert runs == ["uv run invoke test"]


def test_the_complete_settings_example_is_the_defaults() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", section("Configuration"), re.S)
    assert len(blocks) == 1
    assert blocks[0] == settings.example()
    parsed = settings.from_mapping(yaml.safe_load(blocks[0]), source="README")
    assert parsed == settings.from_mapping({"apiVersion": settings.API_VERSION, "kind": settings.KIND}, source="d")


def test_the_configuration_table_names_every_setting() -> None:
    table = section("Configuration")
    keys = set(re.findall(r"^\| `([^`]+)`", table, re.M))
    expected = {name for name in settings.Settings.model_fields if name not in ("api_version", "kind", "images", "agents", "backends")}
    expected |= {f"images.{name}" for name in settings.Images.model_fields}
    expected |= {f"agents[].{name}" for name in settings.Agent.model_fields}
    expected |= {f"backends.compose.{name}" for name in settings.ComposeBackend.model_fields}
    expected |= {"backends.kind.*"}
    missing = expected - keys
    assert not missing, f"README's configuration table misses {sorted(missing)}"
