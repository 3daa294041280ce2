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


# Images each suite's tests run (built before pytest; the layer cache makes a
# rebuild of unchanged images take seconds). Unit tests need none.
SUITE_IMAGES = {
    "unit": (),
    "integration": ("netguard", "scanner", "proxy", "agent", "sink", "gitserver"),
    "redteam": ("netguard", "scanner", "proxy", "agent", "sink", "model"),
    "kind": (),
    "all": ("netguard", "scanner", "proxy", "agent", "sink", "model", "gitserver"),
}
# What a Docker suite cannot do without (doctor's names): each is checked, all reported.
DOCKER_CHECKS = ("python", "settings", "docker engine", "docker compose", "host isolation", "disk")


def prepare(suite: str) -> None:
    """Doctor's checks, then the suite's images: everything the tests need before pytest starts."""
    names = SUITE_IMAGES[suite]
    if not names:
        return
    from kit import doctor, images, settings

    checks = [c for c in doctor.run_checks(doctor.context()) if c.name in DOCKER_CHECKS]
    doctor.report(checks)
    doctor.require(checks)
    images.build(images.options(settings.load().images, only=",".join(names)))


def run_pytest(suite: str, extra: Sequence[str] = (), *, prepare_first: bool = True) -> int:
    argv = pytest_argv(suite, extra)
    if prepare_first:
        prepare(suite)
    env = dict(os.environ)
    if suite != "unit":
        env.setdefault("YOLO_CAGE_REQUIRE_DOCKER", "1")
    console.command(" ".join(argv))
    code = subprocess.call(argv, env=env)
    if code == 5:
        raise CageError(f"pytest collected no tests for suite {suite!r}: nothing was checked")
    return code
