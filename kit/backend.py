"""One interface for every backend (Compose with the Docker SDK, kind with the
Kubernetes client), so tasks, tests and the red team never branch on backend.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return (self.stdout + self.stderr).decode("utf-8", "replace")


@dataclass(frozen=True)
class Component:
    """One running part of the cage: a container (Compose) or a pod (kind)."""

    role: str  # agent | proxy | scanner | netguard
    name: str  # container or pod name
    state: str  # running | exited | pending | ...
    healthy: bool | None  # None: no health information
    agent: str | None = None  # the agent's name, for role == agent
    detail: str = ""


@dataclass(frozen=True)
class CageStatus:
    backend: str
    project: str
    components: tuple[Component, ...] = field(default_factory=tuple)

    @property
    def up(self) -> bool:
        roles = {c.role for c in self.components if c.state == "running"}
        return {"proxy", "scanner"} <= roles


class Backend(abc.ABC):
    """A place where the cage runs."""

    name: str

    @abc.abstractmethod
    def up(self, *, retain: bool = False) -> None:
        """Bring the cage up (idempotent named steps); tear down what was half built unless ``retain``."""

    @abc.abstractmethod
    def down(self, *, remove_data: bool = False) -> list[str]:
        """Remove the cage; return the names of data volumes kept (none when ``remove_data``)."""

    @abc.abstractmethod
    def status(self) -> CageStatus:
        """What is running, by role and agent."""

    @abc.abstractmethod
    def agents(self) -> list[str]:
        """Names of the agents in the cage."""

    @abc.abstractmethod
    def exec(
        self,
        agent: str,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run a command inside an agent (non-interactive, output captured)."""

    @abc.abstractmethod
    def shell(self, agent: str) -> None:
        """An interactive shell in an agent, as its user."""

    @abc.abstractmethod
    def attach(self, agent: str) -> None:
        """Attach to the agent's tmux session running Claude Code."""

    @abc.abstractmethod
    def logs(self, target: str, *, follow: bool = False, tail: int = 200) -> None:
        """Print the logs of a role (proxy, scanner) or an agent name."""

    @abc.abstractmethod
    def read_audit(self, *, tail: int | None = None) -> list[str]:
        """The proxy's audit log (JSON lines, oldest first; the last ``tail`` when given)."""
