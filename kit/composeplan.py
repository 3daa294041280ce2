"""What a Compose cage is made of, computed without touching Docker.

The Compose backend runs ``docker compose`` with the files and environment
planned here, and writes the volumes' contents rendered here. Keeping this
pure lets unit tests check the plan (names, networks, credentials, the
registry the proxy reads) without an engine.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kit import credentials, hostguard
from kit.hostguard import Isolation
from kit.names import LABEL_TEST, PROXY_PORT
from kit.settings import Agent, Settings

COMPOSE_DIR = hostguard.COMPOSE_DIR
BASE_FILE = COMPOSE_DIR / "compose.yaml"
FIRST_AGENT_SERVICE = "agent"
# Volumes whose content the user owns: `invoke down` keeps them unless told otherwise.
DATA_LABEL = "yolo-cage.data"
PROXY_CA_FILE = "mitmproxy-ca.pem"
AGENT_CA_FILE = "ca.crt"


@dataclass(frozen=True)
class AgentPlan:
    agent: Agent
    service: str  # compose service name
    network: str  # compose network key
    token: str
    placeholders: Mapping[str, str] = field(default_factory=dict)  # credential binding -> placeholder
    env: Mapping[str, str] = field(default_factory=dict)  # the placeholders' variables (kit.credentials.agent_env)

    @property
    def name(self) -> str:
        return self.agent.name

    @property
    def proxy_url(self) -> str:
        return f"http://{self.name}:{self.token}@proxy:{PROXY_PORT}"


@dataclass(frozen=True)
class Plan:
    settings: Settings
    isolation: Isolation
    agents: tuple[AgentPlan, ...]
    state_dir: Path
    extra_files: tuple[Path, ...] = ()
    test_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return self.settings.project

    @property
    def needs_overlay(self) -> bool:
        return len(self.agents) > 1 or bool(self.test_labels) or bool(self.agents[0].env)

    def files(self) -> list[Path]:
        files = [BASE_FILE]
        if self.isolation.overlay is not None:
            files.append(self.isolation.overlay)
        if self.needs_overlay:
            files.append(self.state_dir / "rendered" / "compose.generated.yaml")
        return files + list(self.extra_files)

    def env(self) -> dict[str, str]:
        first = self.agents[0]
        res = first.agent.resources
        return {
            "YOLO_CAGE_PROJECT": self.project,
            "YOLO_CAGE_IMAGE_TAG": self.settings.images.tag,
            "YOLO_CAGE_BRIDGE_PREFIX": hostguard.bridge_prefix(self.project),
            "YOLO_CAGE_AGENT_NAME": first.name,
            "YOLO_CAGE_AGENT_BRANCH": first.agent.git_branch,
            "YOLO_CAGE_AGENT_PROXY_URL": first.proxy_url,
            "YOLO_CAGE_AGENT_MEMORY": res.memory,
            "YOLO_CAGE_AGENT_CPUS": f"{res.cpus:g}",
            "YOLO_CAGE_AGENT_PIDS": str(res.pids),
        }

    def generated(self) -> dict[str, Any] | None:
        """The overlay for agents after the first, the first agent's placeholders and test labels (None: not needed)."""
        if not self.needs_overlay:
            return None
        doc: dict[str, Any] = {"services": {}, "networks": {}, "volumes": {}}
        base = yaml.safe_load(BASE_FILE.read_text())
        if self.agents[0].env:
            doc["services"][FIRST_AGENT_SERVICE] = {"environment": dict(self.agents[0].env)}
        for plan in self.agents[1:]:
            _add_agent(doc, base, plan, self)
        if self.test_labels:
            _add_labels(doc, base, self.test_labels)
        return {k: v for k, v in doc.items() if v}


def agent_plans(
    settings: Settings,
    tokens: Mapping[str, str],
    placeholders: Mapping[str, Mapping[str, str]] | None = None,
    env: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[AgentPlan, ...]:
    """The first agent uses the `agent` service and `cage` network; the others their own."""
    plans = []
    for i, agent in enumerate(settings.agents):
        service, network = (FIRST_AGENT_SERVICE, "cage") if i == 0 else (f"agent-{agent.name}", f"cage-{agent.name}")
        mine = dict((placeholders or {}).get(agent.name, {}))
        plans.append(AgentPlan(agent, service, network, tokens[agent.name], mine, dict((env or {}).get(agent.name, {}))))
    return tuple(plans)


def _add_agent(doc: dict[str, Any], base: dict[str, Any], plan: AgentPlan, whole: Plan) -> None:
    """A copy of the first agent's service with its own name, credential, network and volumes."""
    suffix = hostguard.agent_bridge_suffix(plan.name)
    res = plan.agent.resources
    # A full copy, not `extends`: merging would add the first agent's network.
    service = copy.deepcopy(base["services"][FIRST_AGENT_SERVICE])
    service.update(
        hostname=plan.name,
        networks=[plan.network],
        mem_limit=res.memory,
        cpus=res.cpus,
        pids_limit=res.pids,
        volumes=[f"workspace-{plan.name}:/workspace", f"home-{plan.name}:/home/dev", "ca-cert:/etc/yolo-cage/ca:ro"],
        environment={**service["environment"], **_agent_env(plan), **plan.env},
        labels={**service["labels"], "yolo-cage.agent": plan.name},
        depends_on=_agent_depends_on(whole.isolation),
    )
    doc["services"][plan.service] = service
    network: dict[str, Any] = {
        "internal": True,
        "driver_opts": {"com.docker.network.bridge.name": hostguard.bridge_name(whole.project, suffix)},
        "labels": {"yolo-cage.project": whole.project, "yolo-cage.network": plan.network},
    }
    if whole.isolation.mode == "gateway":
        network["driver_opts"].update(hostguard.GATEWAY_OPTIONS)
    doc["networks"][plan.network] = network
    # Not in the proxy's own list: a changed list would make Compose recreate the proxy (every
    # agent's connections cut) whenever an agent is added. The kit connects the proxy to this
    # network through the engine's API instead (kit/agents_compose.py).
    for kind in ("workspace", "home"):
        doc["volumes"][f"{kind}-{plan.name}"] = {
            "labels": {"yolo-cage.project": whole.project, DATA_LABEL: "true", "yolo-cage.agent": plan.name}
        }


def attached_networks(agents: Sequence[AgentPlan]) -> list[str]:
    """The further agents' networks (Compose keys): the kit connects the proxy to each through
    the engine's API (kit/agents_compose.py), so they are not in the proxy's Compose definition."""
    return [plan.network for plan in agents if plan.service != FIRST_AGENT_SERVICE]


def _agent_depends_on(isolation: Isolation) -> dict[str, Any]:
    deps: dict[str, Any] = {"proxy": {"condition": "service_healthy"}}
    if isolation.uses_netguard:
        deps["netguard"] = {"condition": "service_healthy"}
    return deps


def _agent_env(plan: AgentPlan) -> dict[str, str]:
    url = plan.proxy_url
    env = {"YOLO_CAGE_AGENT": plan.name, "YOLO_CAGE_BRANCH": plan.agent.git_branch, "YOLO_CAGE_PROXY_URL": url}
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[var] = env[var.lower()] = url
    return env


def _add_labels(doc: dict[str, Any], base: dict[str, Any], labels: Mapping[str, str]) -> None:
    """Test runs label every container, network and volume so they can be reaped."""
    for section in ("services", "networks", "volumes"):
        for key in list(base.get(section) or {}) + list(doc[section]):
            entry = doc[section].setdefault(key, {})
            entry.setdefault("labels", {}).update(labels)


def write_generated(plan: Plan) -> None:
    doc = plan.generated()
    if doc is None:
        return
    path = plan.state_dir / "rendered" / "compose.generated.yaml"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    header = "# Generated by the kit on every `invoke up` (kit/composeplan.py); do not edit.\n"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)


def registry(agents: Sequence[AgentPlan], subnets: Mapping[str, list[str]]) -> dict[str, Any]:
    """``agents.json`` for the proxy: who may use it, with which credential, from where; its git binding and placeholders."""
    out = {}
    for plan in agents:
        cidrs = subnets.get(plan.network)
        if not cidrs:
            raise ValueError(f"no subnet known for network {plan.network!r} of agent {plan.name!r}")
        out[plan.name] = {
            "token_sha256": hashlib.sha256(plan.token.encode()).hexdigest(),
            "networks": list(cidrs),
            **credentials.git_fields(plan.agent.git_branch, plan.agent.repo),
            "credentials": dict(plan.placeholders),
        }
    return out


def registry_json(agents: Sequence[AgentPlan], subnets: Mapping[str, list[str]]) -> bytes:
    return (json.dumps(registry(agents, subnets), indent=2, sort_keys=True) + "\n").encode()


def test_labels(run_id: str) -> dict[str, str]:
    return {LABEL_TEST: run_id}
