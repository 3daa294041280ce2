"""Agents in parallel: each its own container (Compose) or pod (kind), network,
volumes, branch and proxy identity, added and removed while the others run.

Agents come from two places, merged by :func:`with_added`:

- the settings file's ``agents:``, brought up by ``invoke up``;
- ``invoke agent.new``, recorded in the state dir (``<state>/<project>/agents/<name>.json``)
  and brought up at once, and again by every later ``up``; ``agent.rm`` forgets them.

The lifecycle is shared here as named steps (kit.steps); what differs per backend
(containers and networks, or Deployments and claims) sits behind :class:`AgentOps`
(``kit/agents_compose.py``, ``kit/agents_kind.py``). One ``agent.*`` command runs at a
time per project (a lock in the state dir): two of them rewriting the proxy's
registry or the generated files at once could drop an agent.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from kit import agents_repo, console, state
from kit.backend import Backend
from kit.errors import BackendError, CageError, ConfigError
from kit.settings import NAME_PATTERN, Agent, Resources, Settings
from kit.steps import Step, run_steps

RECORDS = "agents"
LOCK_FILE = "agents.lock"
# Names that would be confused with a role (`invoke logs --target proxy`) or a network key.
RESERVED = frozenset({"agent", "proxy", "scanner", "netguard", "helper", "sink", "model", "gitserver",
                      "cage", "scan", "egress", "template"})  # fmt: skip
_NAME = re.compile(NAME_PATTERN)
NAME_RULE = "a lowercase DNS label of 1-24 characters (a-z, 0-9, '-'), starting with a letter"


# --- names and records -------------------------------------------------------------------------


def check_name(name: str) -> None:
    """Agent names become container, network, bridge, pod and volume names: DNS labels only."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise CageError(f"agent name {name!r} is not valid: {NAME_RULE}")
    if name in RESERVED:
        raise CageError(f"agent name {name!r} is reserved (it names a part of the cage); choose another")


def records_dir(project: str) -> Path:
    return state.project_dir(project) / RECORDS


def added(project: str) -> list[Agent]:
    """Agents made with ``agent.new``, oldest first."""
    folder = records_dir(project)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        try:
            doc = json.loads(state.read_private(path))
            found.append((doc["created"], Agent.model_validate(doc["agent"])))
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise CageError(f"the agent record {path} is damaged ({exc}); remove it and run `invoke agent.rm` again") from None
    return [agent for _, agent in sorted(found, key=lambda item: (item[0], item[1].name))]


def _record(project: str, agent: Agent, created: float) -> None:
    doc = {"created": created, "agent": agent.model_dump(mode="json")}
    state.write_private(records_dir(project) / f"{agent.name}.json", (json.dumps(doc, indent=2) + "\n").encode())


def _forget(project: str, name: str) -> None:
    """The agent's record, proxy token and credential placeholders."""
    from kit import credentials

    (records_dir(project) / f"{name}.json").unlink(missing_ok=True)
    (state.project_dir(project) / "tokens" / name).unlink(missing_ok=True)
    credentials.forget(project, name)


def with_added(settings: Settings) -> Settings:
    """The settings with the agents of ``agent.new`` appended (the settings' own stay first)."""
    extra = added(settings.project)
    if not extra:
        return settings
    clash = sorted(set(settings.agent_names) & {a.name for a in extra})
    if clash:
        raise ConfigError(
            "agents",
            [f"{name}: declared in the settings and also made with `invoke agent.new`; "
             f"remove one (`uv run invoke agent.rm {name}` forgets the second)" for name in clash],
        )  # fmt: skip
    return settings.model_copy(update={"agents": [*settings.agents, *extra]})


def declared(settings: Settings, name: str) -> bool:
    return name in settings.agent_names


@contextmanager
def locked(project: str) -> Iterator[None]:
    path = state.project_dir(project) / LOCK_FILE
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.info(f"  waiting for another `invoke agent.*` on project {project} to finish ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the proxy's registry ---------------------------------------------------------------------


def check_registry(data: bytes) -> None:
    """The proxy refuses every request while its registry is invalid: check with its own parser first."""
    from addon.identity import RegistryError, parse_registry

    try:
        parse_registry(data.decode(), "agents.json")
    except RegistryError as exc:
        raise CageError(f"the agent registry the kit built would be refused by the proxy: {exc}") from None


# --- what each backend does --------------------------------------------------------------------


class AgentOps(Protocol):
    """The per-backend half of the lifecycle (Compose: containers and networks; kind: pods)."""

    kind: str  # "container" or "pod": what the user is told one agent runs in

    def require_running(self) -> None: ...
    def problems(self, agent: Agent, others: Sequence[Agent]) -> list[str]: ...
    def resources(self, name: str) -> list[str]: ...
    def workspace_ref(self, name: str) -> str: ...
    def create(self, agent: Agent) -> Any: ...
    def undo_create(self, created: Any) -> None: ...
    def fill_workspace(self, created: Any, tar: Path) -> bool: ...
    def publish_registry(self, exclude: Sequence[str] = ()) -> None: ...
    def start(self, agent: Agent) -> None: ...
    def remove(self, name: str, *, keep_workspace: bool) -> list[str]: ...
    def converge(self) -> None: ...
    def states(self) -> dict[str, tuple[str, bool | None]]: ...


def ops_for(backend: Backend) -> AgentOps:
    if backend.name == "compose":
        from kit.agents_compose import ComposeAgents

        return ComposeAgents(backend)  # type: ignore[arg-type]
    if backend.name == "kind":
        from kit.agents_kind import KindAgents

        return KindAgents(backend)  # type: ignore[arg-type]
    raise CageError(f"the {backend.name} backend has no agent lifecycle")


# --- agent.new -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewAgent:
    name: str
    branch: str | None = None  # None: yolo-cage/<name>
    repo: str | None = None
    resources: Resources = field(default_factory=Resources)

    def agent(self) -> Agent:
        try:
            return Agent(name=self.name, branch=self.branch, repo=self.repo, resources=self.resources)
        except ValidationError as exc:
            raise CageError(f"agent {self.name!r}: {exc.errors(include_url=False)[0]['msg']}") from None


def resources(memory: str = "", cpus: str | float = "", pids: int = 0) -> Resources:
    """The limits of one agent: the defaults of kit/settings.py where not given."""
    try:
        given = {k: v for k, v in {"memory": memory, "cpus": float(cpus or 0), "pids": int(pids)}.items() if v}
    except ValueError:
        raise ConfigError("agent resources", [f"--cpus: a number of CPUs such as 1.5 (got {cpus!r})"]) from None
    try:
        return Resources(**given)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = [f"--{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in errors]
        raise ConfigError("agent resources", problems) from None


@dataclass
class _NewRun:
    agent: Agent
    source: agents_repo.RepoSource | None = None
    tar: Path | None = None
    checkout: agents_repo.Checkout | None = None
    created: Any = None
    filled: bool = False
    stack: ExitStack = field(default_factory=ExitStack)


@dataclass(frozen=True)
class NewReport:
    agent: Agent
    checkout: agents_repo.Checkout | None
    workspace: str  # "checked out", "kept (already there)", "empty (no repository)"


def new(backend: Backend, request: NewAgent, *, retain: bool = False, clock=None) -> NewReport:
    """Add one agent to a running cage; the others are not touched (see README, "Many agents")."""
    import time

    check_name(request.name)
    ops = ops_for(backend)
    ctx = _NewRun(request.agent())
    project = backend.project
    with locked(project), ctx.stack:
        steps = [
            Step("check the name, the branch and the repository", lambda: _check_new(backend, ops, ctx)),
            Step("fetch the repository on this machine and check out the branch", lambda: _prepare(project, ctx)),
            Step(
                "record the agent and issue its proxy credential",
                lambda: (_record(project, ctx.agent, (clock or time.time)()), state.agent_token(project, ctx.agent.name)),
                undo=lambda: (_forget(project, ctx.agent.name), ops.converge()),
            ),
            Step(f"create its {ops.kind}, network and volumes", lambda: _create(ops, ctx),
                 undo=lambda: ops.undo_create(ctx.created)),  # fmt: skip
            Step("put the checkout into its workspace", lambda: _fill(ops, ctx)),
            Step("give the proxy its identity (no proxy restart)", ops.publish_registry,
                 undo=lambda: ops.publish_registry(exclude=[ctx.agent.name])),  # fmt: skip
            Step("start it and wait until it is healthy", lambda: ops.start(ctx.agent)),
        ]
        run_steps(steps, retain=retain)
    workspace = "checked out" if ctx.filled else ("kept (already there)" if ctx.tar else "empty (no repository)")
    return NewReport(ctx.agent, ctx.checkout, workspace)


def _check_new(backend: Backend, ops: AgentOps, ctx: _NewRun) -> None:
    ops.require_running()
    agent, settings = ctx.agent, backend.settings  # type: ignore[attr-defined]
    agents_repo.check_branch(agent.git_branch)
    others = with_added(settings).agents
    problems = []
    if any(a.name == agent.name for a in others):
        where = "the settings" if declared(settings, agent.name) else "`agent.new`"
        problems.append(f"an agent named {agent.name!r} exists already (from {where})")
    # A workspace kept by `agent.rm --keep-workspace` is taken over as it is; anything else left is in the way.
    left = sorted(set(ops.resources(agent.name)) - {ops.workspace_ref(agent.name)})
    if left and not any(a.name == agent.name for a in others):
        problems.append(f"resources of an earlier agent {agent.name!r} are still there ({', '.join(left)}); "
                        f"remove them with `uv run invoke agent.rm {agent.name}`")  # fmt: skip
    if agent.repo:
        ctx.source = agents_repo.parse(agent.repo)
        agents_repo.verify_local(ctx.source)
        if ctx.source.local and ctx.source.fetch_url != agent.repo:
            # Record the absolute path: a later `up` may run from another directory.
            ctx.agent = agent = agent.model_copy(update={"repo": ctx.source.fetch_url})
    for other in others:
        if other.name != agent.name and other.git_branch == agent.git_branch and other.repo == agent.repo:
            problems.append(f"branch {agent.git_branch!r} is agent {other.name!r}'s already: one branch per agent")
    problems += ops.problems(agent, [a for a in others if a.name != agent.name])
    if problems:
        raise CageError("; ".join(problems))


def _prepare(project: str, ctx: _NewRun) -> None:
    ctx.tar, ctx.checkout = ctx.stack.enter_context(
        agents_repo.prepared_workspace(project, ctx.source, ctx.agent.git_branch, ctx.agent.name)
    )
    if ctx.checkout:
        made = f"new, from {ctx.checkout.base or 'an empty repository'}" if ctx.checkout.new_branch else "existing"
        console.info(f"  branch {ctx.checkout.branch} ({made}) at {(ctx.checkout.commit or 'no commit yet')[:12]}")


def _create(ops: AgentOps, ctx: _NewRun) -> None:
    ctx.created = ops.create(ctx.agent)


def _fill(ops: AgentOps, ctx: _NewRun) -> None:
    if ctx.tar is None:
        console.info("  no repository: the workspace starts empty")
        return
    ctx.filled = ops.fill_workspace(ctx.created, ctx.tar)
    if not ctx.filled:
        console.info("  the workspace volume was kept from an earlier agent of this name: left as it is")


def describe(report: NewReport, kind: str) -> list[str]:
    agent, co = report.agent, report.checkout
    res = agent.resources
    where = f"{agent.repo} on {agent.git_branch}" if agent.repo else f"branch {agent.git_branch} (no repository)"
    lines = [f"agent {agent.name} is up in its own {kind}: {where}; workspace {report.workspace}",
             f"  limits: memory {res.memory}, cpus {res.cpus:g}, pids {res.pids}"]  # fmt: skip
    if co is not None:
        made = f"new branch from {co.base or 'an empty repository'}" if co.new_branch else "existing branch"
        lines.append(f"  {made}, at {(co.commit or 'no commit yet')[:12]}")
    return lines


# --- agent.rm ------------------------------------------------------------------------------------


def remove(backend: Backend, name: str, *, keep_workspace: bool = False) -> list[str]:
    """Remove exactly one agent made with ``agent.new``: its identity at the proxy first, then
    its container or pod, network, volumes (the workspace too unless ``keep_workspace``),
    credential and record. Running it again after an interruption finishes the job."""
    check_name(name)
    ops = ops_for(backend)
    settings = backend.settings  # type: ignore[attr-defined]
    project = backend.project
    with locked(project):
        if declared(settings, name):
            raise CageError(
                f"agent {name!r} is declared in the settings file (agents:); remove it there and run "
                "`uv run invoke up` (`agent.rm` removes agents made with `agent.new`)"
            )
        recorded = any(a.name == name for a in added(project))
        left = ops.resources(name)
        if not recorded and not left:
            known = ", ".join(a.name for a in with_added(settings).agents) or "none"
            raise BackendError(f"no agent named {name!r} in project {project}: nothing of it exists (agents: {known})")
        removed: list[str] = []
        steps = [
            Step("revoke its identity at the proxy", lambda: ops.publish_registry(exclude=[name])),
            Step(f"remove its {ops.kind}, network and volumes",
                 lambda: removed.extend(ops.remove(name, keep_workspace=keep_workspace))),  # fmt: skip
            Step("forget its record and proxy credential", lambda: _forget(project, name)),
            Step("rewrite the cage's generated files without it", ops.converge),
        ]
        run_steps(steps, retain=True)
    return removed


# --- agent.list ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    source: str  # settings | agent.new
    branch: str
    repo: str
    state: str
    healthy: bool | None


def listing(backend: Backend) -> list[Row]:
    settings = backend.settings  # type: ignore[attr-defined]
    states = ops_for(backend).states()
    rows = []
    for agent in with_added(settings).agents:
        st, healthy = states.get(agent.name, ("not running", None))
        source = "settings" if declared(settings, agent.name) else "agent.new"
        rows.append(Row(agent.name, source, agent.git_branch, agent.repo or "-", st, healthy))
    known = {r.name for r in rows}
    for name, (st, healthy) in sorted(states.items()):
        if name not in known:  # running, but neither declared nor recorded: a leftover
            rows.append(Row(name, "unknown (leftover)", "-", "-", st, healthy))
    return rows


def known_agent(backend: Backend, name: str) -> str:
    """``name`` if the cage has such an agent, else an error naming the ones it has."""
    names = [a.name for a in with_added(backend.settings).agents]  # type: ignore[attr-defined]
    if name not in names:
        raise BackendError(f"no agent named {name!r} in project {backend.project} (agents: {', '.join(names)})")  # type: ignore[attr-defined]
    return name
