"""The kind half of the agent lifecycle: one Deployment (one pod) per agent, its
two claims (``workspace-<name>``, ``home-<name>``) and its Secret
(``yolo-cage-agent-<name>``, the proxy credential). The NetworkPolicies select
agents by role, so a new agent falls under the same default deny and the same
agent -> proxy allowance without any new policy, and no agent accepts
connections from another.

The proxy learns a new agent without a restart. The registry Secret reaches it
as a projected volume, which the kubelet rewrites atomically, but only when it
next syncs the proxy's pod: every 60-90 s by default, or at once after any
change to the Pod object. So the kit annotates the proxy's pod (not the
Deployment's template: no rollout) with the registry's digest; the addon then
re-reads the file within a second. Not measured on a live cluster here (kind
cannot run on the development machine): unit tests check the calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kit import agents, console, kindcluster, kindrender, state
from kit.errors import BackendError, CageError, RunError
from kit.kind import WAIT, KindBackend, _replace, _Run, registry_json
from kit.names import LABEL_AGENT, LABEL_ROLE, ROLE_PROXY
from kit.settings import Agent

ANNOTATION = "yolo-cage.dev/agents-sha256"
KINDS = "deployment,persistentvolumeclaim,secret"


@dataclass
class Created:
    name: str
    made: list[str] = field(default_factory=list)  # kind/name of what this run created
    workspace_claim_new: bool = False


def nudge_proxy(backend: KindBackend, digest: str | None = None) -> list[str]:
    """Annotate the proxy's pods so the kubelet syncs their volumes now (the registry among them)."""
    from kubernetes.client.exceptions import ApiException

    digest = digest or hashlib.sha256(backend.cage_inputs().agents_json).hexdigest()
    pods = backend.api.list_namespaced_pod(backend.project, label_selector=f"{LABEL_ROLE}={ROLE_PROXY}").items
    patched = []
    for pod in pods:
        try:
            backend.api.patch_namespaced_pod(pod.metadata.name, backend.project, {"metadata": {"annotations": {ANNOTATION: digest}}})
            patched.append(pod.metadata.name)
        except ApiException as exc:
            if exc.status != 404:  # a pod going away needs no nudge
                raise CageError(f"could not annotate the proxy pod {pod.metadata.name}: {exc.reason}") from None
    return patched


class KindAgents:
    kind = "pod"

    def __init__(self, backend: KindBackend):
        self.backend = backend
        self._pending: Created | None = None

    @property
    def ns(self) -> str:
        return self.backend.project

    def kubectl(self, *args: str, **kw):
        return self.backend.kubectl("-n", self.ns, *args, **kw)

    # --- looking ---------------------------------------------------------------------

    def require_running(self) -> None:
        try:
            self.backend.pod_for("proxy")
        except BackendError:
            raise CageError(
                f"the cage (namespace {self.ns} on kind cluster {self.backend.cluster}) is not up: "
                "run `uv run invoke up --kind` first"
            ) from None

    def problems(self, agent: Agent, others: Sequence[Agent]) -> list[str]:
        return []  # names are DNS labels of <= 24 characters: every derived object name fits

    def resources(self, name: str) -> list[str]:
        out = self.kubectl("get", KINDS, "-l", f"{LABEL_AGENT}={name}", "-o", "name", echo=False)
        return sorted(line.strip() for line in out.stdout.splitlines() if line.strip())

    def workspace_ref(self, name: str) -> str:
        return f"persistentvolumeclaim/workspace-{name}"

    def states(self) -> dict[str, tuple[str, bool | None]]:
        return {c.agent: (c.state, c.healthy) for c in self.backend.status().components if c.role == "agent" and c.agent}

    # --- agent.new -------------------------------------------------------------------

    def create(self, agent: Agent) -> Created:
        created = self._pending = Created(agent.name)
        before = set(self.resources(agent.name))
        manifests = self._render()
        secret = next(o for o in kindrender.cage_objects(self.backend.cage_inputs())
                      if o["metadata"]["name"] == kindrender.agent_secret(agent.name))  # fmt: skip
        _replace(self.backend.api, secret)
        mine = [d for d in manifests if d["metadata"].get("labels", {}).get(LABEL_AGENT) == agent.name]
        if not any(d["kind"] == "Deployment" for d in mine):
            raise CageError(f"the rendered manifests have no Deployment for agent {agent.name!r}")
        # Only this agent's objects: the others and the proxy are not re-applied at all.
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(mine))
        created.made = sorted(set(self.resources(agent.name)) - before)
        created.workspace_claim_new = self.workspace_ref(agent.name) in created.made
        return created

    def _render(self) -> list[dict]:
        ctx = _Run()
        self.backend._render(ctx)  # the overlay and rendered.yaml for every agent: a later `up` converges
        return ctx.manifests

    def undo_create(self, created: Created | None) -> None:
        created = created or self._pending
        if created is None:
            return
        for ref in sorted(created.made, key=_deletion_order):
            self.kubectl("delete", ref, "--ignore-not-found", "--wait=true", "--cascade=foreground", check=False)

    def fill_workspace(self, created: Created, tar: Path) -> bool:
        """Unpack the checkout into /workspace of the running pod (as its user), only into a
        claim this run created and only if it holds no repository yet."""
        if not created.workspace_claim_new:
            return False
        self.kubectl("rollout", "status", f"deployment/agent-{created.name}", f"--timeout={WAIT}")
        pod = self.backend.pod_for(created.name)
        probe = self.kubectl("exec", pod, "-c", "agent", "--", "test", "-e", "/workspace/.git", check=False, echo=False)
        if probe.returncode == 0:
            return False
        # --no-overwrite-dir: /workspace itself belongs to the volume (fsGroup), not to the tar.
        self.kubectl("exec", "-i", pod, "-c", "agent", "--", "tar", "-x", "-f", "-", "-C", "/workspace",
                     "--no-same-owner", "--no-overwrite-dir", input=tar.read_bytes(), echo=False)  # fmt: skip
        return True

    def publish_registry(self, exclude: Sequence[str] = ()) -> None:
        settings = self.backend.cage_settings()
        kept = settings.model_copy(update={"agents": [a for a in settings.agents if a.name not in exclude]})
        tokens = {a.name: state.agent_token(self.ns, a.name) for a in kept.agents}
        pod_subnet = kindcluster.cluster_config(self.backend.kind_settings.node_image)["networking"]["podSubnet"]
        inputs = dataclasses.replace(self.backend.cage_inputs(), agents_json=registry_json(kept, tokens, pod_subnet))
        agents.check_registry(inputs.agents_json)
        registry = next(o for o in kindrender.cage_objects(inputs) if o["metadata"]["name"] == kindrender.AGENTS_SECRET)
        _replace(self.backend.api, registry)
        patched = nudge_proxy(self.backend, hashlib.sha256(inputs.agents_json).hexdigest())
        console.info(f"  registry Secret updated; proxy pod(s) {', '.join(patched) or 'none'} resync it (no restart)")

    def start(self, agent: Agent) -> None:
        try:
            self.kubectl("rollout", "status", f"deployment/agent-{agent.name}", f"--timeout={WAIT}")
        except RunError as exc:
            out = self.kubectl("describe", "pods", "-l", f"{LABEL_AGENT}={agent.name}", check=False, echo=False)
            raise CageError(f"{exc}\n{exc.output}\n{out.stdout[-3000:]}") from exc

    # --- agent.rm --------------------------------------------------------------------

    def remove(self, name: str, *, keep_workspace: bool) -> list[str]:
        keep = self.workspace_ref(name) if keep_workspace else None
        removed = []
        # The Deployment first, waiting for its pod (a claim stays bound while a pod uses it).
        for ref in sorted(self.resources(name), key=_deletion_order):
            if ref == keep:
                console.info(f"  kept {ref} (--keep-workspace)")
                continue
            self.kubectl("delete", ref, "--ignore-not-found", "--wait=true", "--cascade=foreground")
            removed.append(ref)
        return removed

    def converge(self) -> None:
        self._render()


def _deletion_order(ref: str) -> tuple[int, str]:
    return ({"deployment.apps": 0, "secret": 1, "persistentvolumeclaim": 2}.get(ref.split("/", 1)[0], 3), ref)
