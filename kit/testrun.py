"""`invoke test`: prepare what the tests need, then run pytest.

pytest's exit code 5 ("no tests collected") is an error here: a selection that
runs nothing guards nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from kit import console
from kit.errors import CageError

# Marker expressions per suite. "kind" live tests skip themselves where kind
# cannot run; everything else runs in the default ("all") suite, CI included.
SUITES = {
    "unit": "not docker and not kind",
    "integration": "docker and not redteam and not claude and not kind",
    "redteam": "redteam or claude",
    "kind": "kind",
    "all": "",
}


def pytest_argv(suite: str, extra: Sequence[str] = ()) -> list[str]:
    if suite not in SUITES:
        raise CageError(f"unknown test suite {suite!r}; choose one of: {', '.join(SUITES)}")
    argv = [sys.executable, "-m", "pytest"]
    if SUITES[suite]:
        argv += ["-m", SUITES[suite]]
    return argv + list(extra)


def run_pytest(suite: str, extra: Sequence[str] = ()) -> int:
    argv = pytest_argv(suite, extra)
    env = dict(os.environ)
    if suite != "unit":
        env.setdefault("YOLO_CAGE_REQUIRE_DOCKER", "1")
    console.command(" ".join(argv))
    code = subprocess.call(argv, env=env)
    if code == 5:
        raise CageError(f"pytest collected no tests for suite {suite!r}: nothing was checked")
    return code
