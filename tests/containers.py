"""The tests' own containers (the attacker's sink, the gitserver), started through testcontainers.

The cage itself is brought up by the product (``kit.compose``): that is what the
tests are testing. What stands around it, the "internet" an attack aims at, is
an ordinary test container, and testcontainers runs it: create, copy files in,
start, wait for the ready line in its log, and fail with that log if it exits.

testcontainers' reaper (Ryuk) is an image that cannot be pulled on an offline
machine, so it is off unless the caller turned it on; every container carries the
run's ``yolo-cage.test`` label instead and each suite's reaper removes what is left.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

# testcontainers reads its configuration when it is imported.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.container import DockerContainer  # noqa: E402
from testcontainers.core.wait_strategies import LogMessageWaitStrategy  # noqa: E402

READY_TIMEOUT = 60


def run(
    image: str,
    *,
    name: str,
    labels: Mapping[str, str],
    ready_log: str,
    environment: Mapping[str, str] | None = None,
    files: Sequence[tuple[str, bytes, int]] = (),
    timeout: float = READY_TIMEOUT,
    **docker_kwargs: Any,
) -> Any:
    """Start ``image`` and return its docker container once ``ready_log`` is in its log.

    ``files`` are (path, content, mode) copied in before the container starts;
    ``docker_kwargs`` go to the engine as for ``containers.create`` (network,
    capabilities, security options). On any failure nothing is left running.
    """
    container = DockerContainer(image).with_name(name).with_envs(**dict(environment or {}))
    container.with_kwargs(labels=dict(labels), **docker_kwargs)
    for path, content, mode in files:
        container.with_copy_into_container(content, path, mode)
    container.waiting_for(LogMessageWaitStrategy(ready_log).with_startup_timeout(int(timeout)))
    try:
        container.start()
    except BaseException:
        container.stop()
        raise
    return container.get_wrapped_container()


def run_detached(client: Any, image: str, **kwargs: Any) -> Any:
    """``kit.redteam.testcage``'s container runner, through testcontainers (the sink's ready line)."""
    del client  # testcontainers talks to the same engine (DOCKER_HOST or the default socket)
    kwargs.pop("detach", None)
    return run(image, ready_log="yolo-cage sink ready", **kwargs)
