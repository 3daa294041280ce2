"""kit.composeplan: what `docker compose` gets, computed without Docker."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from kit import composeplan, hostguard, settings, volumes
from kit.composeplan import Plan, agent_plans
from kit.hostguard import Engine


def make_settings(**fields) -> settings.Settings:
    return settings.from_mapping({"apiVersion": settings.API_VERSION, "kind": settings.KIND, **fields}, source="t")


def make_plan(tmp_path: Path, engine: str = "20.10.24", test_labels=None, **fields) -> Plan:
    s = make_settings(**fields)
    tokens = {a.name: f"token-{a.name}" for a in s.agents}
    return Plan(
        settings=s,
        isolation=hostguard.choose(s, Engine(engine)),
        agents=agent_plans(s, tokens),
        state_dir=tmp_path,
        test_labels=test_labels or {},
    )


def test_one_agent_uses_the_files_as_they_are(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    assert plan.files() == [composeplan.BASE_FILE]
    assert plan.generated() is None
    env = plan.env()
    assert env["YOLO_CAGE_PROJECT"] == "yolo-cage"
    assert env["YOLO_CAGE_AGENT_NAME"] == "dev"
    assert env["YOLO_CAGE_AGENT_PROXY_URL"] == "http://dev:token-dev@proxy:8080"
    assert env["YOLO_CAGE_BRIDGE_PREFIX"] == hostguard.bridge_prefix("yolo-cage")
    assert (env["YOLO_CAGE_AGENT_MEMORY"], env["YOLO_CAGE_AGENT_CPUS"], env["YOLO_CAGE_AGENT_PIDS"]) == ("4g", "2", "1024")


def test_gateway_mode_adds_its_overlay(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, engine="28.0.1")
    assert [p.name for p in plan.files()] == ["compose.yaml", "host-gateway.yaml"]


def test_each_further_agent_gets_its_own_network_volumes_credential_and_bridge(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, agents=[{"name": "alice"}, {"name": "bob", "resources": {"memory": "2g", "cpus": 1}}])
    doc = plan.generated()
    assert doc is not None and plan.files()[-1].name == "compose.generated.yaml"
    bob = doc["services"]["agent-bob"]
    assert bob["networks"] == ["cage-bob"]
    assert bob["environment"]["YOLO_CAGE_PROXY_URL"] == "http://bob:token-bob@proxy:8080"
    assert bob["environment"]["HTTPS_PROXY"] == bob["environment"]["https_proxy"] == "http://bob:token-bob@proxy:8080"
    assert bob["labels"]["yolo-cage.agent"] == "bob" and bob["labels"]["yolo-cage.role"] == "agent"
    assert (bob["mem_limit"], bob["cpus"]) == ("2g", 1.0)
    assert "workspace-bob:/workspace" in bob["volumes"] and "ca-cert:/etc/yolo-cage/ca:ro" in bob["volumes"]
    assert not any(v.startswith(("workspace:", "home:")) for v in bob["volumes"])  # never alice's
    assert bob["depends_on"] == {"proxy": {"condition": "service_healthy"}, "netguard": {"condition": "service_healthy"}}
    net = doc["networks"]["cage-bob"]
    assert net["internal"] is True
    bridge = net["driver_opts"]["com.docker.network.bridge.name"]
    assert bridge.startswith(hostguard.bridge_prefix("yolo-cage")) and len(bridge) <= 15
    # The proxy joins cage-bob through the engine's API (kit/agents_compose.py): its own Compose
    # definition must not change when agents come and go, or Compose would recreate it.
    assert "proxy" not in doc["services"]
    assert doc["volumes"]["workspace-bob"]["labels"][composeplan.DATA_LABEL] == "true"


def test_further_agents_in_gateway_mode_get_isolated_bridges_and_no_netguard(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, engine="28.0.0", agents=[{"name": "a"}, {"name": "b"}])
    doc = plan.generated()
    assert doc is not None
    opts = doc["networks"]["cage-b"]["driver_opts"]
    assert opts["com.docker.network.bridge.gateway_mode_ipv4"] == "isolated"
    assert "netguard" not in doc["services"]["agent-b"]["depends_on"]


def test_test_labels_reach_every_service_network_and_volume(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, test_labels={"yolo-cage.test": "run1"})
    doc = plan.generated()
    assert doc is not None
    base = yaml.safe_load(composeplan.BASE_FILE.read_text())
    for section in ("services", "networks", "volumes"):
        assert set(doc[section]) == set(base[section])
        assert all(entry["labels"] == {"yolo-cage.test": "run1"} for entry in doc[section].values())


def test_write_generated_is_private(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, agents=[{"name": "a"}, {"name": "b"}])
    composeplan.write_generated(plan)
    path = tmp_path / "rendered" / "compose.generated.yaml"
    assert path.stat().st_mode & 0o777 == 0o600  # it holds agents' proxy credentials
    assert yaml.safe_load(path.read_text()) == plan.generated()


def test_registry_holds_token_hashes_and_each_agents_own_subnet(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, agents=[{"name": "a"}, {"name": "b"}])
    reg = json.loads(composeplan.registry_json(plan.agents, {"cage": ["172.20.0.0/16"], "cage-b": ["172.21.0.0/16"]}))
    git = {"repositories": [], "credentials": {}}
    assert reg == {
        "a": {"token_sha256": hashlib.sha256(b"token-a").hexdigest(), "networks": ["172.20.0.0/16"], "branch": "yolo-cage/a", **git},
        "b": {"token_sha256": hashlib.sha256(b"token-b").hexdigest(), "networks": ["172.21.0.0/16"], "branch": "yolo-cage/b", **git},
    }
    assert "token-a" not in json.dumps(reg)
    with pytest.raises(ValueError, match="no subnet"):
        composeplan.registry(plan.agents, {"cage": ["172.20.0.0/16"]})


def test_the_registry_is_what_the_addon_accepts_and_the_agents_url_authenticates(tmp_path: Path) -> None:
    import base64

    from addon import identity

    plan = make_plan(tmp_path)
    registry = identity.parse_registry(composeplan.registry_json(plan.agents, {"cage": ["172.20.0.0/16"]}).decode())
    header = "Basic " + base64.b64encode(b"dev:token-dev").decode()
    assert identity.authenticate(registry, header, "172.20.0.9") == ("dev", None)
    # The same credential from outside the agent's own network is refused.
    agent, decision = identity.authenticate(registry, header, "172.99.0.9")
    assert agent is None and decision is not None


def test_volume_tar_sets_owner_and_mode() -> None:
    import io
    import tarfile

    data = volumes.tar_of(
        {"ca/key.pem": volumes.File(b"k", 0o400, 10001, 10001)}, {".": volumes.Dir(0o700, 10001, 10001)}
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["."].isdir() and members["."].mode == 0o700 and members["."].uid == 10001
    key = members["ca/key.pem"]
    assert (key.mode, key.uid, key.gid, key.size) == (0o400, 10001, 10001, 1)
