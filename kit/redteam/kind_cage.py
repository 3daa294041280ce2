"""The red team's cage on kind (TEST ONLY, never a user's cage), and the attacker's world around it.

A cage brought up here is the user's kind cage with exactly these differences:

- its own cluster (``<cluster_name>-redteam``) and project (``<project>-redteam``),
  two agents (``dev``, ``peer``) so "another agent" is a real target;
- the component ``kind/components/redteam`` (see its kustomization): the proxy
  reaches the sink and nothing real, resolves through the sink, trusts its CA;
- the policy's one loosening, ``destinations.unsafe_allow_private_networks``
  for the sink's Service address only;
- before the cage's objects, named steps bring up the attacker's world
  (``kind/redteam/attacker``: sink, witness, node stand-ins), read the sink's CA
  into the ConfigMap the proxy mounts, point CoreDNS's forwarder at the sink
  (no name asked in this cluster ever reaches a resolver off this machine) and
  put the metadata addresses on every node's loopback.

``up`` is idempotent: a second run reuses the cluster, and a sink that restarted
with a new CA restarts the cage's pods (the CA is part of the restart digest).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kit import console, kindrender, state
from kit import settings as settings_mod
from kit.errors import CageError
from kit.kind import CAGE_IMAGES, WAIT, KindBackend
from kit.names import LABEL_ROLE
from kit.redteam import kind_render
from kit.redteam.kind_world import METADATA_ADDRESSES, KindWorld
from kit.runner import run
from kit.steps import Step

AGENTS = ("dev", "peer")
SUFFIX = "-redteam"
_FORWARD = re.compile(r"^(?P<indent>[ \t]*)forward[ \t]+\.[ \t]+(?P<to>[^{\n]*?)(?P<tail>[ \t]*\{?)[ \t]*$", re.M)


def redteam_settings(user: settings_mod.Settings, *, cluster: str | None = None,
                     project: str | None = None) -> settings_mod.Settings:
    """The user's kind settings (node image, Calico, image tag) for a cluster and project of the red team's own."""
    kind = user.backends.kind.model_dump()
    kind["cluster_name"] = cluster or f"{kind['cluster_name']}{SUFFIX}"
    data = {
        "apiVersion": settings_mod.API_VERSION, "kind": settings_mod.KIND, "backend": "kind",
        "project": project or f"{user.project}{SUFFIX}",
        "agents": [{"name": a} for a in AGENTS],
        "images": user.images.model_dump(),
        "backends": {"kind": kind},
    }
    return settings_mod.from_mapping(data, source="red-team kind cage")


def write_policy(workdir: Path) -> Path:
    """The default policy plus the one test-only loosening: the sink's address counts as the internet."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "policy.redteam-kind.yaml"
    path.write_text(
        "# Red-team cage on kind (kit/redteam/kind_cage.py): TEST ONLY.\n"
        "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"
        f"destinations:\n  unsafe_allow_private_networks: ['{kind_render.SINK_SERVICE_IP}/32']\n",
        encoding="utf-8",
    )
    return path


def forward_to(corefile: str, address: str) -> str:
    """The Corefile with its ``forward .`` upstreams replaced by ``address`` (options block kept)."""
    if not _FORWARD.search(corefile):
        raise CageError("CoreDNS's Corefile has no 'forward .' line: cannot point its forwarder at the sink")
    return _FORWARD.sub(lambda m: f"{m['indent']}forward . {address}{m['tail']}", corefile)


class RedTeamKindBackend(KindBackend):
    """A kind cage with the red team's component, and the attacker's world brought up in its steps."""

    images = (*CAGE_IMAGES, "sink")

    def __init__(self, settings: settings_mod.Settings, *, policy_file: Path, build: bool = True,
                 test_labels: dict[str, str] | None = None, api=None):
        super().__init__(settings, policy_file=policy_file, build=build, test_labels=test_labels, api=api,
                         components=(kind_render.COMPONENT_DIR,))
        self.sink_ca: bytes | None = None

    def world(self, *, allow_offhost: bool = False) -> KindWorld:
        return KindWorld(self, allow_offhost=allow_offhost)

    def _world_steps(self) -> list[Step]:
        return [
            Step(f"the attacker's world (namespace {kind_render.ATTACKER_NS}: sink, witness, node stand-ins), ready",
                 self._attacker),
            Step("the sink's CA, for the proxy's upstream TLS", self._read_sink_ca),
            Step("CoreDNS forwards every outside name to the sink", self._coredns_to_sink),
            Step("the metadata addresses on every node's loopback", self._metadata_on_nodes),
        ]

    def extra_objects(self) -> list[dict[str, Any]]:
        if self.sink_ca is None:
            raise CageError("the sink's CA was not read before the cage's objects were made")
        return [kind_render.upstream_ca_configmap(self.project, self.sink_ca)]

    def _attacker(self) -> None:
        docs = kindrender.load_all(kind_render.attacker_manifests())
        for doc in docs:
            if doc["kind"] == "Namespace":
                doc["metadata"]["labels"].update(self.test_labels)
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(docs))
        for what in ("deployment/sink", "deployment/witness", f"daemonset/{kind_render.ROLE_NODE_STANDIN}"):
            self.kubectl("-n", kind_render.ATTACKER_NS, "rollout", "status", what, f"--timeout={WAIT}")

    def _read_sink_ca(self) -> None:
        sink = self.world().pod(kind_render.ATTACKER_NS, f"{LABEL_ROLE}=sink", "the sink")
        pem = self.kubectl("-n", kind_render.ATTACKER_NS, "exec", sink["metadata"]["name"], "-c", "sink", "--",
                           "cat", kind_render.SINK_CA_FILE, echo=False).stdout
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise CageError(f"the sink's {kind_render.SINK_CA_FILE} holds no certificate")
        self.sink_ca = pem.encode()

    def _coredns_to_sink(self) -> None:
        import json

        configmap = json.loads(self.kubectl("-n", "kube-system", "get", "configmap", "coredns", "-o", "json",
                                            echo=False).stdout)
        corefile = configmap["data"]["Corefile"]
        wanted = forward_to(corefile, kind_render.SINK_SERVICE_IP)
        if wanted == corefile:
            return
        patch = json.dumps({"data": {"Corefile": wanted}})
        self.kubectl("-n", "kube-system", "patch", "configmap", "coredns", "--type", "merge", "-p", patch)
        self.kubectl("-n", "kube-system", "rollout", "restart", "deployment/coredns")
        self.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", f"--timeout={WAIT}")

    def _metadata_on_nodes(self) -> None:
        for node in run(["kind", "get", "nodes", "--name", self.cluster], echo=False).stdout.split():
            for address in METADATA_ADDRESSES:
                run(["docker", "exec", node, "ip", "addr", "replace", f"{address}/32", "dev", "lo"])


def backend_for(user: settings_mod.Settings, *, cluster: str | None = None, project: str | None = None,
                build: bool = True, test_labels: dict[str, str] | None = None) -> RedTeamKindBackend:
    settings = redteam_settings(user, cluster=cluster, project=project)
    policy = write_policy(state.project_dir(settings.project) / "redteam")
    return RedTeamKindBackend(settings, policy_file=policy, build=build, test_labels=test_labels)


def remove(backend: KindBackend) -> bool:
    """Delete the red team's cluster (it is the red team's alone); False when there was none."""
    if not backend.cluster_exists():
        return False
    if not backend.cluster.endswith(SUFFIX) and not backend.test_labels:
        raise CageError(f"refusing to delete cluster {backend.cluster}: not a red-team cluster")
    console.info(f"deleting the red team's kind cluster {backend.cluster}")
    run(["kind", "delete", "cluster", "--name", backend.cluster], timeout=600)
    return True
