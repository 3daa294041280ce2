"""Scanner unit-test fixtures: one real Scanner per session (building it compiles ~25k patterns)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "data"))

from scanner.config import ScannerConfig  # noqa: E402
from scanner.core import Scanner  # noqa: E402


@pytest.fixture(scope="session")
def scanner() -> Scanner:
    return Scanner(ScannerConfig())
