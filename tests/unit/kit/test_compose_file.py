"""compose/: the hardening, networks and host isolation the Compose cage promises.

Read as plain YAML (no Docker): these are the properties a reviewer would
check by eye, checked on every run so an edit cannot quietly drop one.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kit import flows, hostguard
from kit.composeplan import BASE_FILE, COMPOSE_DIR

REPO = Path(__file__).resolve().parents[3]


class _Loader(yaml.SafeLoader):
    pass


# Compose's merge tags: keep the value, remember the tag.
for _tag in ("!reset", "!override"):
    _Loader.add_constructor(_tag, lambda loader, node: {"__tag__": node.tag, "value": _construct(loader, node)})


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


def load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return load(BASE_FILE)


def services(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return base["services"]


def test_default_project_name(base: dict[str, Any]) -> None:
    assert base["name"] == "${YOLO_CAGE_PROJECT:-yolo-cage}"


@pytest.mark.parametrize("name", ["netguard", "scanner", "proxy", "agent"])
def test_every_service_is_hardened(base: dict[str, Any], name: str) -> None:
    svc = services(base)[name]
    assert svc["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in svc["security_opt"]
    assert svc["init"] is True
    assert svc["read_only"] is True
    assert svc["restart"] == "unless-stopped"
    assert svc["pids_limit"] and svc["mem_limit"]
    assert svc["healthcheck"]["test"]
    assert svc["labels"]["yolo-cage.role"] == name
    assert svc["labels"]["yolo-cage.project"] == "${YOLO_CAGE_PROJECT:-yolo-cage}"
    assert "privileged" not in svc and "pid" not in svc and "ipc" not in svc


def test_only_netguard_has_capabilities_and_the_host_network(base: dict[str, Any]) -> None:
    for name, svc in services(base).items():
        if name == "netguard":
            assert sorted(svc["cap_add"]) == ["NET_ADMIN", "NET_RAW"]
            assert svc["network_mode"] == "host"
        else:
            assert "cap_add" not in svc and "network_mode" not in svc


def test_no_ports_are_published_and_nothing_is_bind_mounted(base: dict[str, Any]) -> None:
    for svc in services(base).values():
        assert "ports" not in svc
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            assert source in base["volumes"], f"{mount!r} is not a named volume"


def test_services_run_as_non_root(base: dict[str, Any]) -> None:
    assert services(base)["agent"]["user"] == "1000:1000"
    for name in ("scanner", "proxy"):
        assert "user" not in services(base)[name]
        dockerfile = (REPO / "images" / name / "Dockerfile").read_text()
        users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
        assert users and not users[-1].startswith(("0", "root")), f"{name} image must end with a non-root USER"


def test_networks(base: dict[str, Any]) -> None:
    nets = base["networks"]
    assert nets["cage"]["internal"] is True
    assert nets["scan"]["internal"] is True
    assert not nets["egress"].get("internal")
    svcs = services(base)
    assert svcs["agent"]["networks"] == ["cage"]
    assert svcs["scanner"]["networks"] == ["scan"]
    assert sorted(svcs["proxy"]["networks"]) == ["cage", "egress", "scan"]


def test_who_shares_a_network_matches_the_flow_table(base: dict[str, Any]) -> None:
    members: dict[str, set[str]] = {}
    for name, svc in services(base).items():
        for net in svc.get("networks", []):
            members.setdefault(net, set()).add(name)
    assert members["egress"] == {"proxy"}
    for net, names in members.items():
        for a, b in itertools.permutations(sorted(names), 2):
            assert flows.allowed(a, b) or flows.allowed(b, a), f"{a} and {b} share {net} but the flow table denies it"


def test_cage_side_services_have_no_ipv6(base: dict[str, Any]) -> None:
    for name in ("agent", "scanner"):
        sysctls = services(base)[name]["sysctls"]
        assert sysctls["net.ipv6.conf.all.disable_ipv6"] == 1
        assert sysctls["net.ipv6.conf.default.disable_ipv6"] == 1


def test_agents_and_scanner_wait_for_netguard(base: dict[str, Any]) -> None:
    svcs = services(base)
    assert svcs["agent"]["depends_on"]["netguard"] == {"condition": "service_healthy"}
    assert svcs["agent"]["depends_on"]["proxy"] == {"condition": "service_healthy"}
    assert svcs["scanner"]["depends_on"]["netguard"] == {"condition": "service_healthy"}
    assert svcs["proxy"]["depends_on"]["scanner"] == {"condition": "service_healthy"}


def test_every_bridge_is_named_under_the_project_prefix(base: dict[str, Any]) -> None:
    prefix = hostguard.bridge_prefix("yolo-cage")
    env = services(base)["netguard"]["environment"]["YOLO_CAGE_BRIDGE_PREFIX"]
    assert env == "${YOLO_CAGE_BRIDGE_PREFIX:-" + prefix + "}"
    for key, net in base["networks"].items():
        name = net["driver_opts"]["com.docker.network.bridge.name"]
        assert name.startswith("${YOLO_CAGE_BRIDGE_PREFIX:-" + prefix + "}")
        assert len(prefix + name.split("}")[1]) <= 15, key


def test_the_ca_key_is_mounted_in_the_proxy_only_and_agents_get_the_certificate_read_only(base: dict[str, Any]) -> None:
    mounts = {name: svc.get("volumes", []) for name, svc in services(base).items()}
    for volume in ("ca-key", "proxy-config"):
        holders = [name for name, vols in mounts.items() if any(v.startswith(f"{volume}:") for v in vols)]
        assert holders == ["proxy"], volume
    assert "ca-key:/var/lib/yolo-cage/ca" in mounts["proxy"]
    assert "proxy-config:/etc/yolo-cage:ro" in mounts["proxy"]
    assert "ca-cert:/etc/yolo-cage/ca:ro" in mounts["agent"]
    assert [n for n, vols in mounts.items() if any(v.startswith("ca-cert:") for v in vols)] == ["agent"]


def test_data_volumes_are_labelled_and_the_others_are_not(base: dict[str, Any]) -> None:
    data = {k for k, v in base["volumes"].items() if v["labels"].get("yolo-cage.data") == "true"}
    assert data == {"workspace", "home", "audit"}


def test_agent_gets_its_proxy_credential_and_identity(base: dict[str, Any]) -> None:
    env = services(base)["agent"]["environment"]
    for var in ("YOLO_CAGE_PROXY_URL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[var] == "${YOLO_CAGE_AGENT_PROXY_URL:-}"
    assert env["YOLO_CAGE_AGENT"] == "${YOLO_CAGE_AGENT_NAME:-dev}"
    assert "yolo-cage.internal" not in env["NO_PROXY"]  # the health check must go through the proxy
    assert services(base)["agent"]["labels"]["yolo-cage.agent"] == "${YOLO_CAGE_AGENT_NAME:-dev}"


def test_gateway_overlay_isolates_every_internal_network_and_drops_netguard(base: dict[str, Any]) -> None:
    overlay = load(COMPOSE_DIR / "host-gateway.yaml")
    internal = {k for k, v in base["networks"].items() if v.get("internal")}
    assert set(overlay["networks"]) == internal
    for key in internal:
        assert overlay["networks"][key]["driver_opts"] == hostguard.GATEWAY_OPTIONS
    _netguard_dropped(overlay)


def test_unprotected_overlay_only_drops_netguard() -> None:
    overlay = load(COMPOSE_DIR / "host-unprotected.yaml")
    assert "networks" not in overlay
    _netguard_dropped(overlay)


def _netguard_dropped(overlay: dict[str, Any]) -> None:
    svcs = overlay["services"]
    assert svcs["netguard"]["profiles"]
    assert svcs["scanner"]["depends_on"]["__tag__"] == "!reset"
    agent_deps = svcs["agent"]["depends_on"]
    assert agent_deps["__tag__"] == "!override"
    assert agent_deps["value"] == {"proxy": {"condition": "service_healthy"}}
