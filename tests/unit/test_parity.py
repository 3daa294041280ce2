"""Parity: the Compose networks and the kind NetworkPolicies each allow exactly
the flows of kit/flows.py, and widening either one makes the check fail,
naming the extra flow."""

from __future__ import annotations

import copy

import pytest

from kit import flows, kindrender, parity
from kit.ipsets import Addresses

CLUSTER = parity.load_kind_cluster_config()


def kind_docs(name: str = "two-agents") -> list[dict]:
    return copy.deepcopy(kindrender.rendered_scenario(name))


def policy(docs: list[dict], name: str) -> dict:
    return next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == name)


def findings_text(findings) -> str:
    return "\n".join(str(f) for f in findings)


# --- the oracle's own consistency ---------------------------------------------------


def test_proxy_internet_policy_excepts_exactly_the_non_public_ipv4_ranges():
    block = policy(kind_docs(), "proxy-egress-to-internet")["spec"]["egress"][0]["to"][0]["ipBlock"]
    v4 = [r for r in flows.NON_PUBLIC_RANGES if ":" not in r]
    assert sorted(block["except"]) == sorted(v4)
    assert block["cidr"] == "0.0.0.0/0"


def test_metadata_addresses_are_not_public():
    assert Addresses.of(flows.NON_PUBLIC_RANGES).covers(Addresses.of(flows.METADATA_RANGES))


# --- kind -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", tuple(kindrender.SCENARIOS))
def test_kind_network_policies_allow_exactly_the_flow_table(name):
    assert parity.check_kind(kind_docs(name), CLUSTER) == []


def test_kind_evaluates_every_pair_with_a_cage_part():
    peers = parity.kind_peers(kind_docs(), CLUSTER)
    assert set(peers) == set(flows.ENDPOINTS)
    pairs = set(parity._kind_pairs(peers))
    assert ("agent", "other-agent") in pairs and ("agent", "metadata") in pairs and ("internet", "proxy") in pairs


def _agent_egress_anywhere(docs):
    policy(docs, "agent-egress-to-proxy")["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})


def _scanner_ingress_from_agents(docs):
    rule = policy(docs, "scanner-ingress-from-proxy")["spec"]["ingress"][0]
    rule["from"].append({"podSelector": {"matchLabels": {"yolo-cage.role": "agent"}}})


def _drop_default_deny(docs):
    docs.remove(policy(docs, "default-deny"))


def _agent_to_proxy_any_port(docs):
    del policy(docs, "agent-egress-to-proxy")["spec"]["egress"][0]["ports"]


def _proxy_reaches_link_local(docs):
    policy(docs, "proxy-egress-to-internet")["spec"]["egress"][0]["to"][0]["ipBlock"]["except"].remove("169.254.0.0/16")


def _proxy_internet_any_protocol(docs):
    del policy(docs, "proxy-egress-to-internet")["spec"]["egress"][0]["ports"]


def _agent_dns(docs):
    dns_rule = copy.deepcopy(policy(docs, "proxy-egress-to-dns")["spec"]["egress"][0])
    policy(docs, "agent-egress-to-proxy")["spec"]["egress"].append(dns_rule)


def _agents_talk_to_each_other(docs):
    same = {"podSelector": {"matchLabels": {"yolo-cage.role": "agent"}}}
    policy(docs, "agent-egress-to-proxy")["spec"]["egress"].append({"to": [same]})


def _proxy_from_anywhere(docs):
    del policy(docs, "proxy-ingress-from-agents")["spec"]["ingress"][0]["from"]


def _proxy_reaches_the_node(docs):
    policy(docs, "proxy-egress-to-internet")["spec"]["egress"][0]["to"][0]["ipBlock"]["except"].remove("172.16.0.0/12")


# (mutation, the extra flow that must be named, a word of its detail)
WIDENINGS = [
    (_agent_egress_anywhere, "agent -> internet", "egress of agent"),
    (_agent_egress_anywhere, "agent -> metadata", "169.254.169.254"),
    (_agent_egress_anywhere, "agent -> dns", "UDP"),
    (_scanner_ingress_from_agents, "agent -> scanner", "ingress of scanner allows TCP 8000"),
    (_drop_default_deny, "scanner -> internet", "egress of scanner"),
    (_drop_default_deny, "proxy -> agent", "ingress of agent"),
    (_agent_to_proxy_any_port, "agent -> proxy", "TCP 1-8079,8081-65535"),
    (_proxy_reaches_link_local, "proxy -> metadata", "TCP"),
    (_proxy_reaches_link_local, "proxy -> private", "169.254.0.0"),
    (_proxy_internet_any_protocol, "proxy -> internet", "UDP"),
    (_proxy_internet_any_protocol, "proxy -> internet", "ICMP"),
    (_agent_dns, "agent -> dns", "UDP 53"),
    (_agents_talk_to_each_other, "agent -> other-agent", "egress of agent"),
    (_proxy_from_anywhere, "internet -> proxy", "ingress of proxy"),
    (_proxy_reaches_the_node, "proxy -> cluster-api", "172.16.0.0/12"),
    (_proxy_reaches_the_node, "proxy -> host", "TCP"),
]


@pytest.mark.parametrize("mutate,flow,word", WIDENINGS, ids=[f"{m.__name__}:{f}" for m, f, _ in WIDENINGS])
def test_widening_a_network_policy_fails_parity_naming_the_flow(mutate, flow, word):
    docs = kind_docs()
    mutate(docs)
    found = [f for f in parity.check_kind(docs, CLUSTER) if f.kind == "extra" and f"{f.src} -> {f.dst}" == flow]
    assert found, f"no extra {flow}:\n{findings_text(parity.check_kind(docs, CLUSTER))}"
    assert any(word in str(f) for f in found), findings_text(found)


def test_narrowing_a_network_policy_fails_parity_as_missing():
    docs = kind_docs()
    docs.remove(policy(docs, "proxy-egress-to-scanner"))
    missing = [f for f in parity.check_kind(docs, CLUSTER) if f.kind == "missing"]
    assert [(f.src, f.dst) for f in missing] == [("proxy", "scanner")]


def test_an_excluded_range_missing_from_the_internet_is_reported():
    docs = kind_docs()
    policy(docs, "proxy-egress-to-internet")["spec"]["egress"][0]["to"][0]["ipBlock"]["except"].append("8.8.8.0/24")
    missing = [f for f in parity.check_kind(docs, CLUSTER) if f.kind == "missing"]
    assert [(f.src, f.dst) for f in missing] == [("proxy", "internet")]


# --- Compose ---------------------------------------------------------------------------


def compose() -> dict:
    return copy.deepcopy(parity.load_compose())


def test_compose_networks_allow_exactly_the_flow_table_plus_listed_gaps():
    assert parity.check_compose(compose()) == []


def test_every_listed_compose_gap_exists_and_names_its_control():
    assert parity.stale_gaps(compose()) == []
    for gap in flows.gaps("compose"):
        assert gap.closed_by and gap.why


def test_compose_with_two_agents_keeps_them_apart():
    project = _with_second_agent(compose(), own_network=True)
    assert parity.check_compose(project) == []
    assert parity.stale_gaps(project) == []


def _with_second_agent(project: dict, *, own_network: bool) -> dict:
    """A second agent as the kit adds it (kit/composeplan.py): its own internal network shared with the proxy."""
    from kit import composeplan, hostguard, settings

    cfg = settings.from_mapping(
        {"apiVersion": "yolo-cage.dev/v1alpha1", "kind": "Settings", "agents": [{"name": "alice"}, {"name": "bob"}]},
        source="test",
    )
    isolation = hostguard.Isolation("firewall", "test", None)
    plans = composeplan.agent_plans(cfg, {"alice": "t1", "bob": "t2"})
    overlay = composeplan.Plan(cfg, isolation, plans, state_dir=None).generated()  # type: ignore[arg-type]
    merged = copy.deepcopy(project)
    for section in ("services", "networks", "volumes"):
        for key, value in (overlay.get(section) or {}).items():
            merged.setdefault(section, {}).setdefault(key, {}).update(value)
    # The kit connects the proxy to further agents' networks through the engine's API (not the file).
    merged["services"]["proxy"]["networks"] = [*merged["services"]["proxy"]["networks"], *composeplan.attached_networks(plans)]
    if not own_network:
        bob = next(k for k, v in merged["services"].items() if v.get("labels", {}).get("yolo-cage.agent") == "bob")
        merged["services"][bob]["networks"] = ["cage"]
    return merged


def _scanner_on_egress(p):
    p["services"]["scanner"]["networks"].append("egress")


def _agent_on_scan(p):
    p["services"]["agent"]["networks"].append("scan")


def _cage_not_internal(p):
    p["networks"]["cage"]["internal"] = False


def _docker_socket(p):
    p["services"]["agent"].setdefault("volumes", []).append("/var/run/docker.sock:/var/run/docker.sock")


def _published_port(p):
    p["services"]["proxy"]["ports"] = ["8080:8080"]


def _scanner_default_network(p):
    del p["services"]["scanner"]["networks"]


def _agent_host_network(p):
    del p["services"]["agent"]["networks"]
    p["services"]["agent"]["network_mode"] = "host"


COMPOSE_WIDENINGS = [
    (_scanner_on_egress, "scanner -> internet"),
    (_scanner_on_egress, "scanner -> dns"),
    (_agent_on_scan, "agent -> scanner"),
    (_cage_not_internal, "agent -> internet"),
    (_cage_not_internal, "agent -> metadata"),
    (_docker_socket, "agent -> cluster-api"),
    (_published_port, "internet -> proxy"),
    (_scanner_default_network, "scanner -> internet"),
    (_agent_host_network, "agent -> internet"),
]


@pytest.mark.parametrize("mutate,flow", COMPOSE_WIDENINGS, ids=[f"{m.__name__}:{f}" for m, f in COMPOSE_WIDENINGS])
def test_widening_the_compose_networks_fails_parity_naming_the_flow(mutate, flow):
    project = compose()
    mutate(project)
    found = parity.check_compose(project)
    assert any(f.kind == "extra" and f"{f.src} -> {f.dst}" == flow for f in found), findings_text(found)


def test_two_agents_on_one_network_fail_parity():
    found = parity.check_compose(_with_second_agent(compose(), own_network=False))
    assert "compose: extra flow agent -> other-agent: not in the flow table" in findings_text(found)


def test_narrowing_the_compose_networks_fails_parity_as_missing():
    project = compose()
    project["services"]["proxy"]["networks"].remove("scan")
    found = parity.check_compose(project)
    assert [(f.kind, f.src, f.dst) for f in found] == [("missing", "proxy", "scanner")]


def test_an_unknown_role_is_refused():
    project = compose()
    project["services"]["debug"] = {"image": "x", "labels": {"yolo-cage.role": "debug"}}
    with pytest.raises(Exception, match="not in the flow table"):
        parity.check_compose(project)


def test_compose_with_the_engines_isolated_gateway_closes_the_host_gaps():
    project = parity.load_compose(parity.COMPOSE_FILE, parity.COMPOSE_FILE.parent / "host-gateway.yaml")
    assert parity.check_compose(project) == []
    closed = {(g.src, g.dst) for g in parity.stale_gaps(project)}
    assert {("agent", "host"), ("scanner", "host")} <= closed
    assert ("proxy", "host") not in closed  # the egress network still reaches the host: the addon covers it
