"""The red team's session: one red-team cage, one run of the whole catalog, its scorecard.

The cage is a real Compose cage with the attacker's world around it
(``kit.redteam.testcage``: the sink as internet and as the proxy's resolver,
an internal egress network, two agents). The catalog runs once for the session
(independent probes in parallel inside the agent, then the fault rows); each
technique is then one test, and the scorecard is printed at the end of the
run and written to ``reports/``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import pytest

from kit.redteam import cli, runner, scorecard, testcage
from tests import containers as test_containers
from kit.redteam.compose_world import ComposeWorld

RUN_ID = f"rt{time.strftime('%m%d%H%M%S')}{secrets.token_hex(2)}"
_SCORECARDS: list[str] = []


@pytest.fixture(scope="session")
def redteam_cage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testcage.TestCage]:
    previous = os.environ.get("YOLO_CAGE_STATE_DIR")
    os.environ["YOLO_CAGE_STATE_DIR"] = str(tmp_path_factory.mktemp("redteam-state"))
    cage = None
    try:
        # The attacker's sink is a testcontainers container; the cage is the product's own Compose bring-up.
        cage = testcage.start(f"ycrt-{RUN_ID}", run_id=RUN_ID, run_container=test_containers.run_detached)
        yield cage
    finally:
        try:
            if cage is not None:
                cage.stop()
        finally:
            _reap(RUN_ID)
            if previous is None:
                os.environ.pop("YOLO_CAGE_STATE_DIR", None)
            else:
                os.environ["YOLO_CAGE_STATE_DIR"] = previous


def _reap(run_id: str) -> None:
    """Whatever this run labelled and is still there (a failed start, an interrupted test)."""
    from kit.compose import docker_client

    client = docker_client()
    label = {"label": f"yolo-cage.test={run_id}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True, v=True)
    for network in client.networks.list(filters=label):
        network.remove()
    for volume in client.volumes.list(filters=label):
        volume.remove(force=True)


def world(cage: testcage.TestCage) -> ComposeWorld:
    return ComposeWorld(cage.backend, client=cage.client)


@pytest.fixture(scope="session")
def redteam_report(redteam_cage: testcage.TestCage) -> scorecard.Report:
    report = runner.run(world(redteam_cage))
    scorecard.write(report, cli.REPORTS)
    _SCORECARDS.append(scorecard.text(report))
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    for text in _SCORECARDS:
        terminalreporter.section("red-team scorecard (also in reports/redteam-compose.txt)")
        terminalreporter.write(text)
