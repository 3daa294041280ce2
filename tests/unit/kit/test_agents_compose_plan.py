"""The Compose half of the agent lifecycle, without Docker: what the plan gives Compose for added
agents, and the refusal of an agent.new that would make Compose touch shared parts of the cage."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit import agents, composeplan, hostguard, settings
from kit.agents_compose import refuse_shared_changes, workspace_volume
from kit.errors import CageError
from kit.hostguard import Engine
from kit.settings import Agent

# `docker compose --dry-run up --no-start --no-deps agent-erin`, as Compose 2.40 printed it on a
# running cage: once with the cage's own configuration, once after its configuration changed.
CLEAN = """ DRY-RUN MODE -  Network p_cage-erin  Creating
 DRY-RUN MODE -  Network p_cage-erin  Created
 DRY-RUN MODE -  Volume p_workspace-erin  Creating
 DRY-RUN MODE -  Volume p_workspace-erin  Created
 DRY-RUN MODE -  Volume p_home-erin  Creating
 DRY-RUN MODE -  Volume p_home-erin  Created
 DRY-RUN MODE -  Container p-agent-erin-1  Creating
 DRY-RUN MODE -  Container p-agent-erin-1  Created
"""
DIVERGED = (
    'Volume "p_ca-cert" exists but doesn\'t match configuration in compose file. Recreate (data will be lost)?'
    'Volume "p_audit" exists but doesn\'t match configuration in compose file. Recreate (data will be lost)?'
    "  DRY-RUN MODE -  Network p_egress  Removed\n DRY-RUN MODE -  Network p_cage  Removed\n" + CLEAN
)
OWN = {"Network p_cage-erin", "Volume p_workspace-erin", "Volume p_home-erin", "Container p-agent-erin-1"}


def test_a_dry_run_that_names_only_the_agents_own_resources_passes() -> None:
    refuse_shared_changes(CLEAN, OWN)


def test_a_dry_run_that_would_remove_shared_networks_or_recreate_volumes_is_refused() -> None:
    with pytest.raises(CageError, match=r"shared parts of the cage \(Network p_cage, Network p_egress\).*invoke up"):
        refuse_shared_changes(DIVERGED, OWN)
    with pytest.raises(CageError, match="p_ca-cert"):
        refuse_shared_changes('Volume "p_ca-cert" exists but doesn\'t match configuration in compose file. Recreate?', OWN)
    with pytest.raises(CageError, match="Container p-agent-bob-1"):
        refuse_shared_changes(CLEAN + " DRY-RUN MODE -  Container p-agent-bob-1  Recreate\n", OWN)


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> settings.Settings:
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))
    return settings.from_mapping({"apiVersion": settings.API_VERSION, "kind": settings.KIND, "project": "pp"}, source="t")


def plan_of(cfg: settings.Settings, tmp_path: Path) -> composeplan.Plan:
    merged = agents.with_added(cfg)
    tokens = {a.name: f"t-{a.name}" for a in merged.agents}
    return composeplan.Plan(merged, hostguard.choose(merged, Engine("20.10.24")), composeplan.agent_plans(merged, tokens),
                            state_dir=tmp_path)  # fmt: skip


def test_added_agents_get_their_own_services_and_the_proxy_definition_never_changes(cfg, tmp_path: Path) -> None:
    one = plan_of(cfg, tmp_path)
    agents._record("pp", Agent(name="alice"), 1.0)
    agents._record("pp", Agent(name="bob"), 2.0)
    two = plan_of(cfg, tmp_path)
    doc = two.generated()
    assert doc is not None and {"agent-alice", "agent-bob"} <= set(doc["services"])
    assert "proxy" not in doc["services"]  # Compose's view of the proxy: the same with 1 or 3 agents
    assert composeplan.attached_networks(two.agents) == ["cage-alice", "cage-bob"]
    assert composeplan.attached_networks(one.agents) == []
    assert [workspace_volume("pp", ap) for ap in two.agents] == ["pp_workspace", "pp_workspace-alice", "pp_workspace-bob"]
    # Adding bob leaves alice's service exactly as it was (Compose would not recreate her).
    agents._record("pp", Agent(name="carol"), 3.0)
    assert plan_of(cfg, tmp_path).generated()["services"]["agent-alice"] == doc["services"]["agent-alice"]
