"""The decision modules stay pure: nothing from mitmproxy (or aiohttp) is imported by them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ADDON = Path(__file__).resolve().parents[3] / "addon"
PURE = ["addresses", "audit", "credentials", "decision", "destinations", "gitpack", "gitsmart", "hostnames", "identity", "policy", "resolver", "rules", "scanning"]


@pytest.mark.parametrize("module", PURE)
def test_decision_modules_import_nothing_from_mitmproxy(module: str) -> None:
    tree = ast.parse((ADDON / f"{module}.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in ("mitmproxy", "aiohttp")}
    assert all(name.split(".")[0] != "addon" or name.split(".")[1] in PURE for name in imported if name.startswith("addon."))


def test_every_top_level_module_is_classified() -> None:
    others = {"__init__", "__main__", "entry", "scanclient"}
    assert {p.stem for p in ADDON.glob("*.py")} == set(PURE) | others
