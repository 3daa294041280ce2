"""Bring-up as an ordered list of named, idempotent steps.

Each step may register an ``undo``; when a step fails, the undos of the steps
that completed run in reverse order (unless the caller asked to retain the
half-built state), and a :class:`StepError` names the failed step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kit import console
from kit.errors import StepError


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], object]
    undo: Callable[[], object] | None = None


def run_steps(steps: Sequence[Step], *, retain: bool = False) -> None:
    done: list[Step] = []
    for step in steps:
        console.step_start(step.name)
        started = time.monotonic()
        try:
            step.run()
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt must clean up too
            console.step_end(step.name, False, time.monotonic() - started)
            if not retain:
                _undo(done)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise StepError(step.name, exc, cleaned_up=not retain) from exc
        console.step_end(step.name, True, time.monotonic() - started)
        done.append(step)


def _undo(done: list[Step]) -> None:
    for step in reversed(done):
        if step.undo is None:
            continue
        try:
            step.undo()
        except Exception as exc:  # noqa: BLE001 - keep undoing the rest
            console.warn(f"could not undo '{step.name}': {exc}")
