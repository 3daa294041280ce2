"""Fixtures for the addon's unit tests (the harness itself is in addon_harness.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from addon_harness import Cage


@pytest.fixture
def cage(tmp_path: Path) -> Callable[..., Cage]:
    def make(**kw: object) -> Cage:
        return Cage(tmp_path, **kw)  # type: ignore[arg-type]

    return make
