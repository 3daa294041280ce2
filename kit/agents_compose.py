"""The Compose half of the agent lifecycle: one container per agent, on its own
internal network ``cage-<name>`` shared only with the proxy.

Adding or removing an agent must not disturb the others. Compose recreates a
container whenever its configuration changes; a proxy whose Compose networks
listed every agent network would be recreated by each new agent, cutting every
other agent's connections. So the proxy's Compose networks stay ``cage``,
``scan``, ``egress``, and the kit connects it to each agent network through the
engine's API (alias ``proxy``), at ``up`` and at ``agent.new``. Compose ignores
networks a container has beyond its own list, so a later ``up`` converges
without recreating anything. The agent registry (``agents.json``) is replaced in
place, written beside and renamed; the addon re-reads it within a second.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from docker.errors import DockerException, NotFound

from kit import agents, agents_repo, composeplan, console, hostguard, volumes
from kit.compose import PROJECT_LABEL, WAIT_TIMEOUT, ComposeBackend, read_volume_file
from kit.composeplan import AgentPlan, Plan
from kit.errors import CageError, RunError
from kit.names import LABEL_AGENT, LABEL_PROJECT, LABEL_ROLE, ROLE_HELPER, ROLE_PROXY, image_ref
from kit.settings import Agent

REGISTRY_FILE = "agents.json"
NETWORK_LABEL = "yolo-cage.network"


@dataclass
class Created:
    """What one `agent.new` made, so a failure removes exactly that."""

    name: str
    container: str | None = None
    network: str | None = None  # set only when this run created it
    volumes: list[str] = field(default_factory=list)  # the ones this run created
    workspace_volume: str = ""


def workspace_volume(project: str, plan: AgentPlan) -> str:
    key = "workspace" if plan.service == composeplan.FIRST_AGENT_SERVICE else f"workspace-{plan.name}"
    return f"{project}_{key}"


class ComposeAgents:
    kind = "container"

    def __init__(self, backend: ComposeBackend):
        self.backend = backend
        self._pending: Created | None = None

    @property
    def client(self):
        return self.backend.client

    @property
    def project(self) -> str:
        return self.backend.project

    def plan(self, exclude: Sequence[str] = ()) -> Plan:
        plan = self.backend.plan()
        if exclude:
            plan = dataclasses.replace(plan, agents=tuple(a for a in plan.agents if a.name not in exclude))
        return plan

    def _filters(self, **labels: str) -> dict[str, list[str]]:
        return {"label": [f"{PROJECT_LABEL}={self.project}", *(f"{k}={v}" for k, v in labels.items())]}

    def _helper_labels(self) -> dict[str, str]:
        return {**self.backend.test_labels, LABEL_PROJECT: self.project, LABEL_ROLE: ROLE_HELPER}

    # --- looking ---------------------------------------------------------------------

    def proxy(self, *, running: bool = False):
        found = self.client.containers.list(all=not running, filters=self._filters(**{LABEL_ROLE: ROLE_PROXY}))
        return found[0] if found else None

    def require_running(self) -> None:
        if self.proxy(running=True) is None:
            raise CageError(f"the cage (project {self.project}) is not up: run `uv run invoke up` first")

    def containers(self, name: str):
        return self.client.containers.list(all=True, filters=self._filters(**{LABEL_AGENT: name}))

    def network(self, name: str):
        found = self.client.networks.list(filters=self._filters(**{NETWORK_LABEL: f"cage-{name}"}))
        return found[0] if found else None

    def volumes_of(self, name: str):
        return self.client.volumes.list(filters=self._filters(**{LABEL_AGENT: name}))

    def resources(self, name: str) -> list[str]:
        out = [f"container {c.name}" for c in self.containers(name)]
        out += [f"volume {v.name}" for v in self.volumes_of(name)]
        net = self.network(name)
        return sorted(out + ([f"network {net.name}"] if net else []))

    def workspace_ref(self, name: str) -> str:
        return f"volume {self.project}_workspace-{name}"

    def states(self) -> dict[str, tuple[str, bool | None]]:
        return {c.agent: (c.state, c.healthy) for c in self.backend.status().components if c.role == "agent" and c.agent}

    def problems(self, agent: Agent, others: Sequence[Agent]) -> list[str]:
        first = self.backend.settings.agents[0].name
        suffix = hostguard.agent_bridge_suffix(agent.name)
        clash = [o.name for o in others if o.name != first and hostguard.agent_bridge_suffix(o.name) == suffix]
        if clash:
            return [f"agent name {agent.name!r} would get the same network bridge name as agent {clash[0]!r} "
                    f"({hostguard.bridge_name(self.project, suffix)}); choose another name"]  # fmt: skip
        return []

    # --- agent.new -------------------------------------------------------------------

    def create(self, agent: Agent) -> Created:
        plan = self.plan()
        ap = _agent_plan(plan, agent.name)
        created = self._pending = Created(agent.name, workspace_volume=workspace_volume(self.project, ap))
        before = {v.name for v in self.client.volumes.list(filters=self._filters())}
        had_network = self.network(agent.name) is not None
        composeplan.write_generated(plan)
        create = ("up", "--no-start", "--no-deps", "--pull", "never", ap.service)
        refuse_shared_changes(self.backend.compose(plan, "--dry-run", *create).output, self.own_resources(ap))
        try:
            # --no-deps: only this service is converged; the proxy and the other agents are not looked at.
            self.backend.compose(plan, *create)
        finally:
            net = self.network(agent.name)
            created.network = net.name if net is not None and not had_network else None
            created.volumes = sorted({v.name for v in self.volumes_of(agent.name)} - before)
            found = self.containers(agent.name)
            created.container = found[0].name if found else None
        self.attach_proxy([ap])
        return created

    def own_resources(self, ap: AgentPlan) -> set[str]:
        """What creating one further agent may touch: its network, volumes and container (Compose's names)."""
        p = self.project
        return {f"Network {p}_{ap.network}", f"Volume {p}_workspace-{ap.name}", f"Volume {p}_home-{ap.name}",
                f"Container {p}-{ap.service}-1"}  # fmt: skip

    def attach_proxy(self, plans: Sequence[AgentPlan]) -> list[str]:
        """Connect the proxy to each agent network it is not on yet (alias `proxy`); returns them."""
        proxy = self.proxy()
        if proxy is None:
            raise CageError(f"project {self.project} has no proxy container")
        proxy.reload()
        joined = set(proxy.attrs["NetworkSettings"]["Networks"])
        done = []
        for key in composeplan.attached_networks(plans):
            name = f"{self.project}_{key}"
            if name not in joined:
                self.client.networks.get(name).connect(proxy, aliases=[ROLE_PROXY])
                done.append(name)
        return done

    def undo_create(self, created: Created | None) -> None:
        created = created or self._pending
        if created is None:
            return
        for container in self.containers(created.name):
            container.remove(force=True)
        if created.network:
            _remove_network(self.client, self.client.networks.get(created.network))
        for name in created.volumes:
            self.client.volumes.get(name).remove(force=True)

    def fill_workspace(self, created: Created, tar: Path) -> bool:
        """Put the checkout into the agent's workspace volume, only if this run created it."""
        if created.workspace_volume not in created.volumes or created.container is None:
            return False
        container = self.client.containers.get(created.container)
        put_tree(container, "/workspace", tar)
        return True

    def publish_registry(self, exclude: Sequence[str] = ()) -> None:
        """Write agents.json for the agents of the cage (minus ``exclude``) into the proxy's
        configuration volume, atomically; a cage that is down gets it at its next `up`."""
        if self.proxy() is None:
            console.info("  the cage is down: its next `up` writes the registry")
            return
        plan = self.plan(exclude)
        data = composeplan.registry_json(plan.agents, {p.network: self._subnets(p) for p in plan.agents})
        agents.check_registry(data)
        image = image_ref("proxy", self.backend.settings.images.tag)
        uid, gid = volumes.image_user(self.client, image)
        changed = replace_file(
            self.client, f"{self.project}_proxy-config", REGISTRY_FILE, volumes.File(data, 0o440, uid, gid), image,
            self._helper_labels(),
        )  # fmt: skip
        console.info("  registry updated: the proxy reads it within a second" if changed else "  registry unchanged")

    def _subnets(self, ap: AgentPlan) -> list[str]:
        try:
            return self.backend._subnets(ap.network)
        except NotFound:
            raise CageError(
                f"agent {ap.name!r} has no network {self.project}_{ap.network}: "
                f"remove it (`uv run invoke agent.rm {ap.name}`) or bring the cage up again"
            ) from None

    def start(self, agent: Agent) -> None:
        plan = self.plan()
        ap = _agent_plan(plan, agent.name)
        try:
            self.backend.compose(
                plan, "up", "--detach", "--no-deps", "--wait", "--wait-timeout", str(WAIT_TIMEOUT), "--pull", "never",
                ap.service,
            )  # fmt: skip
        except RunError as exc:
            raise CageError(f"{exc}\n{exc.output}\n{self.backend.diagnose()}") from exc

    # --- agent.rm --------------------------------------------------------------------

    def remove(self, name: str, *, keep_workspace: bool) -> list[str]:
        removed = []
        for container in self.containers(name):
            container.remove(force=True)
            removed.append(f"container {container.name}")
        net = self.network(name)
        if net is not None:
            _remove_network(self.client, net)
            removed.append(f"network {net.name}")
        for volume in self.volumes_of(name):
            if keep_workspace and f"volume {volume.name}" == self.workspace_ref(name):
                console.info(f"  kept {volume.name} (--keep-workspace)")
                continue
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
        return removed

    def converge(self) -> None:
        composeplan.write_generated(self.plan())


_DRY_RUN = re.compile(r"DRY-RUN MODE -\s+(Network|Volume|Container)\s+(\S+)\s+(\w+)")


def refuse_shared_changes(dry_run: str, own: set[str]) -> None:
    """Compose's dry run of creating one agent may only name that agent's resources. When the
    cage's configuration changed since its `up` (settings, the kit, the overlays), Compose would
    recreate shared networks or volumes, cutting every agent off: refuse instead."""
    touched = {f"{kind} {name}" for kind, name, _ in _DRY_RUN.findall(dry_run)} - own
    if touched or "doesn't match configuration" in dry_run:
        detail = ", ".join(sorted(touched)) or dry_run.split("?")[0].strip()[:300]
        raise CageError(
            f"adding this agent would make Compose change shared parts of the cage ({detail}): the cage's "
            "configuration changed since its last `up`. Run `uv run invoke up` first (it may restart the proxy), "
            "then `agent.new` again"
        )


def _agent_plan(plan: Plan, name: str) -> AgentPlan:
    for ap in plan.agents:
        if ap.name == name:
            return ap
    raise CageError(f"agent {name!r} is not in the plan of project {plan.project}")


def _remove_network(client, network) -> None:
    """Disconnect everything (the proxy, running or not), then remove the network."""
    network.reload()
    attached = set(network.attrs.get("Containers") or {})
    project = (network.attrs.get("Labels") or {}).get(PROJECT_LABEL)
    for container in client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"}):
        if network.name in (container.attrs.get("NetworkSettings") or {}).get("Networks", {}):
            attached.add(container.id)
    for endpoint in attached:
        try:
            network.disconnect(endpoint, force=True)
        except NotFound:
            pass
    network.remove()


# --- files into volumes --------------------------------------------------------------------


def put_tree(container, path: str, tar: Path) -> None:
    """Stream a tar into ``path`` of a (created or running) container; its volumes included."""
    try:
        with open(tar, "rb") as stream:
            if not container.put_archive(path, stream):
                raise CageError(f"could not write into {path} of {container.name}")
    except DockerException as exc:
        raise CageError(f"could not write into {path} of {container.name}: {exc}") from exc


def replace_file(client, volume: str, name: str, spec: volumes.File, image: str, labels: Mapping[str, str]) -> bool:
    """Replace one file of a volume atomically (kit.volumes.replace_file); False when it holds that already."""
    if read_volume_file(client, volume, name, image, labels) == spec.data:
        return False
    volumes.replace_file(client, volume, name, spec, image, labels)
    return True


# --- for `invoke up` ---------------------------------------------------------------------------


def fill_new_workspaces(backend: ComposeBackend, plan: Plan, volumes_before: set[str]) -> None:
    """Agents with a repository whose workspace volume this `up` created get their checkout."""
    for ap in plan.agents:
        volume = workspace_volume(backend.project, ap)
        if not ap.agent.repo or volume in volumes_before:
            continue
        source = agents_repo.parse(ap.agent.repo)
        agents_repo.verify_local(source)
        found = backend.client.containers.list(all=True, filters={"label": [f"{PROJECT_LABEL}={backend.project}",
                                                                            f"{LABEL_AGENT}={ap.name}"]})  # fmt: skip
        if not found:
            raise CageError(f"agent {ap.name!r} has no container to fill its workspace through")
        with agents_repo.prepared_workspace(backend.project, source, ap.agent.git_branch, ap.name) as (tar, _):
            assert tar is not None
            put_tree(found[0], "/workspace", tar)
        console.info(f"  {ap.name}: {source.spec} on {ap.agent.git_branch}")
