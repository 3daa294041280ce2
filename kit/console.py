"""What the kit prints: progress, commands, results. Colour only on a terminal.

Read the environment at call time (``NO_COLOR``, ``YOLO_CAGE_QUIET``), never at
import time, so tests and tasks can change it.
"""

from __future__ import annotations

import os
import sys

_COLOURS = {"dim": "2", "red": "31", "green": "32", "yellow": "33", "bold": "1"}


def _tty(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty() and not os.environ.get("NO_COLOR")


def paint(text: str, colour: str, stream=None) -> str:
    stream = stream or sys.stderr
    if not _tty(stream):
        return text
    return f"\033[{_COLOURS[colour]}m{text}\033[0m"


def quiet() -> bool:
    return os.environ.get("YOLO_CAGE_QUIET", "") not in ("", "0")


def info(message: str) -> None:
    if not quiet():
        print(message, file=sys.stderr, flush=True)


def command(pasteable: str) -> None:
    """Echo a command the kit is about to run, so the user can paste it."""
    if os.environ.get("YOLO_CAGE_ECHO", "1") != "0" and not quiet():
        print(paint(f"  $ {pasteable}", "dim"), file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(paint(f"WARNING: {message}", "yellow"), file=sys.stderr, flush=True)


def error(message: str) -> None:
    print(paint(f"ERROR: {message}", "red"), file=sys.stderr, flush=True)


def step_start(name: str) -> None:
    if not quiet():
        print(paint("•", "bold") + f" {name} ...", file=sys.stderr, flush=True)


def step_end(name: str, ok: bool, seconds: float, note: str = "") -> None:
    if quiet():
        return
    mark = paint("done", "green") if ok else paint("FAILED", "red")
    extra = f" ({note})" if note else ""
    print(f"  {name}: {mark} in {seconds:.1f}s{extra}", file=sys.stderr, flush=True)
