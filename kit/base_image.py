"""The base image every cage image starts from (``ARG BASE_IMAGE``).

Two sources, same content (Debian 13 "trixie", slim):

- ``registry``: the pinned official image, pulled by the Docker engine;
- ``offline``: the same suite built here with ``debootstrap --variant=minbase``,
  slimmed like the official slim image and loaded with ``docker import`` as
  ``yolo-cage/base:trixie-<YYYYMMDD>``. Needs root and the Debian package
  archive, but no container registry.

``auto`` prefers what is already on this machine (the pinned image, then the
newest offline base), so repeated builds keep one base and their layer cache;
otherwise it tries one pull with a short timeout and falls back to offline.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kit.errors import CageError, RunError

# Debian 13 (trixie) gives Python 3.13, which mitmproxy 12 needs. Pinned by a
# dated tag: images change only when this line does.
OFFICIAL_BASE = "debian:trixie-20260406-slim"
SUITE = "trixie"
OFFLINE_REPO = "yolo-cage/base"
MODES = ("auto", "registry", "offline")
# A registry that answers fails or succeeds quickly; one that is unreachable
# (DNS or packets dropped) can hang far longer than a build is worth waiting.
PULL_PROBE_TIMEOUT = 30.0
PULL_TIMEOUT = 900.0

_OFFLINE_TAG = re.compile(rf"^{re.escape(OFFLINE_REPO)}:{SUITE}-(\d{{8}})$")


@dataclass(frozen=True)
class BaseChoice:
    ref: str
    source: str  # "registry" | "offline"
    build_needed: bool  # an offline base must be built (debootstrap) first
    reason: str


class Engine(Protocol):
    """What base selection asks of the Docker engine (a fake in unit tests)."""

    def has_image(self, ref: str) -> bool: ...

    def pull(self, ref: str, timeout: float) -> tuple[bool, str]: ...

    def image_refs(self, repository: str) -> list[str]: ...


def offline_ref(day: dt.date) -> str:
    return f"{OFFLINE_REPO}:{SUITE}-{day:%Y%m%d}"


def newest_offline(refs: list[str]) -> str | None:
    """The newest ``yolo-cage/base:trixie-YYYYMMDD`` among ``refs`` (other tags ignored)."""
    dated = [(m.group(1), ref) for ref in refs if (m := _OFFLINE_TAG.match(ref))]
    return max(dated)[1] if dated else None


def choose(
    mode: str,
    engine: Engine,
    *,
    official: str = OFFICIAL_BASE,
    refresh: bool = False,
    today: Callable[[], dt.date] = dt.date.today,
) -> BaseChoice:
    """Pick the base image for ``mode`` (auto | registry | offline)."""
    if mode not in MODES:
        raise CageError(f"unknown base mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "registry":
        return _registry(engine, official)
    existing = None if refresh else newest_offline(engine.image_refs(OFFLINE_REPO))
    if mode == "offline":
        return _offline(existing, today(), "asked for (--base offline)")
    if engine.has_image(official):
        return BaseChoice(official, "registry", False, f"{official} is already here")
    if existing:
        return _offline(existing, today(), "an offline base is already here")
    ok, output = engine.pull(official, PULL_PROBE_TIMEOUT)
    if ok:
        return BaseChoice(official, "registry", False, f"pulled {official}")
    why = _last_line(output)
    return _offline(None, today(), f"no registry answered ({why})")


def _registry(engine: Engine, official: str) -> BaseChoice:
    if engine.has_image(official):
        return BaseChoice(official, "registry", False, f"{official} is already here")
    ok, output = engine.pull(official, PULL_TIMEOUT)
    if not ok:
        raise CageError(
            f"cannot pull the base image {official}: {_last_line(output)}\n"
            "Use --base offline (builds it with debootstrap, needs root) or --base auto."
        )
    return BaseChoice(official, "registry", False, f"pulled {official}")


def _offline(existing: str | None, day: dt.date, reason: str) -> BaseChoice:
    if existing:
        return BaseChoice(existing, "offline", False, f"{reason}; using {existing}")
    return BaseChoice(offline_ref(day), "offline", True, f"{reason}; building one with debootstrap")


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


class DockerEngine:
    """The real engine, through the docker CLI (quietly: these are queries)."""

    def has_image(self, ref: str) -> bool:
        from kit.runner import run

        return run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], check=False, echo=False).returncode == 0

    def pull(self, ref: str, timeout: float) -> tuple[bool, str]:
        from kit.runner import run

        try:
            result = run(["docker", "pull", ref], check=False, timeout=timeout)
        except RunError as exc:  # timed out: treat as no registry
            return False, exc.output or f"no answer within {timeout:.0f}s"
        return result.returncode == 0, result.output

    def image_refs(self, repository: str) -> list[str]:
        from kit.runner import run

        out = run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository], echo=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]
