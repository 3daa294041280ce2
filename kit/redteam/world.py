"""Everything around the agent the red team needs: targets, the sink's capture, faults.

A :class:`World` wraps a running cage on one backend. The runner only talks
to agents through ``Backend.exec`` (so the catalog is the same everywhere);
the world adds what an attacker's side must see: where the sink and the other
parts are, what the sink recorded, and how to stop or freeze the scanner.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence

from kit.backend import Backend, ExecResult
from kit.redteam.catalog import Technique
from kit.redteam.hostlistener import HostListener
from kit.redteam.targets import Targets

AGENT, WITNESS = "agent", "witness"


class World(abc.ABC):
    backend: Backend

    @abc.abstractmethod
    def targets(self, agent: str, host_port: int | None) -> Targets:
        """Addresses and names as seen from ``agent``, plus the red team's host listener port."""

    @abc.abstractmethod
    def sink_mark(self) -> int:
        """A position in the sink's capture: :meth:`sink_lines` returns what came after it."""

    @abc.abstractmethod
    def sink_lines(self, since: int) -> list[str]:
        """The capture's JSON lines recorded after ``since``."""

    @abc.abstractmethod
    def allowed_sources(self) -> set[str]:
        """Addresses the sink may legitimately hear from (the proxy's)."""

    def faults(self) -> tuple[str, ...]:
        """The faults this world can inject (see ``catalog.FAULTS``)."""
        return ()

    @contextlib.contextmanager
    def fault(self, name: str) -> Iterator[None]:
        raise NotImplementedError(f"fault {name!r} is not supported on this backend")
        yield  # pragma: no cover

    def host_listener_ok(self) -> bool:
        """Whether a listener on this process's machine is the cage's host (Compose: yes)."""
        return False

    def host_listener(self) -> contextlib.AbstractContextManager:
        """The red team's stand-in for the cage's host while a run lasts: an object with
        ``port`` and ``connections`` (see :class:`HostListener`), or None where there is none."""
        return HostListener() if self.host_listener_ok() else contextlib.nullcontext(None)

    def adapt(self, technique: Technique) -> Technique | str:
        """This backend's form of a catalog row (same id), or why the row has no meaning here."""
        return technique

    def places(self) -> tuple[str, ...]:
        """Where probes can run: the attacking agent, and on some backends a witness, a pod
        no cage policy governs, for the controls no agent path can carry (``probe["where"]``)."""
        return (AGENT,)

    def witness_exec(self, argv: Sequence[str], stdin: bytes, timeout: float) -> ExecResult:
        raise NotImplementedError("this backend has no witness")
