"""The NetworkPolicy evaluator follows the API's semantics, rule by rule."""

from __future__ import annotations

import pytest

from kit.ipsets import Addresses, Intervals
from kit.netpol import Cluster, External, Pod, PolicyError, Traffic, covered, match_selector

NET = Addresses.of(["192.168.0.0/16"])
A = Pod("a", "ns", {"role": "a"}, NET, {"web": ("TCP", 8080)})
B = Pod("b", "ns", {"role": "b"}, NET, {"web": ("TCP", 8080)})
OTHER_NS = Pod("c", "other", {"role": "a"}, NET)
WORLD = External("world", Addresses.of(["0.0.0.0/0"]) - Addresses.of(["10.0.0.0/8", "192.168.0.0/16"]))
META = External("meta", Addresses.of(["169.254.169.254/32"]))
NAMESPACES = {"ns": {"kubernetes.io/metadata.name": "ns"}, "other": {"kubernetes.io/metadata.name": "other", "team": "x"}}


def policy(name, spec, ns="ns"):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}


DENY = policy("deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})


def tcp(*ports):
    return Traffic.of({"TCP": Intervals.of([(p, p) for p in ports])})


def traffic(cluster, src, dst):
    out = Traffic()
    for piece in cluster.allowed(src, dst):
        out = out | piece.traffic
    return out


def test_no_policy_means_open():
    assert traffic(Cluster([], NAMESPACES), A, B) == Traffic.everything()


def test_default_deny_closes_both_directions():
    cluster = Cluster([DENY], NAMESPACES)
    assert not cluster.allowed(A, B)
    assert not cluster.allowed(A, WORLD)
    assert not cluster.allowed(WORLD, A)


def test_egress_and_ingress_must_both_allow():
    egress = policy("e", {"podSelector": {"matchLabels": {"role": "a"}}, "policyTypes": ["Egress"],
                          "egress": [{"to": [{"podSelector": {"matchLabels": {"role": "b"}}}], "ports": [{"port": 8080}]}]})
    assert not Cluster([DENY, egress], NAMESPACES).allowed(A, B)
    ingress = policy("i", {"podSelector": {"matchLabels": {"role": "b"}}, "policyTypes": ["Ingress"],
                           "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "a"}}}], "ports": [{"port": "web"}]}]})
    assert traffic(Cluster([DENY, egress, ingress], NAMESPACES), A, B) == tcp(8080)


def test_rule_without_ports_allows_every_protocol_icmp_included():
    egress = policy("e", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})
    got = traffic(Cluster([egress], NAMESPACES), A, WORLD)
    assert got == Traffic.everything() and got.get("OTHER")


def test_ipblock_except_removes_addresses():
    egress = policy("e", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}], "ports": [{"protocol": "TCP"}]}]})
    cluster = Cluster([egress], NAMESPACES)
    assert not cluster.allowed(A, META)
    all_tcp = Traffic.of({"TCP": Intervals.of([(1, 65535)])})
    # WORLD holds link-local addresses too: the except leaves them uncovered.
    assert covered(cluster.allowed(A, WORLD), WORLD.addresses, all_tcp) == all_tcp
    public = External("public", WORLD.addresses - Addresses.of(["169.254.0.0/16"]))
    assert not covered(cluster.allowed(A, public), public.addresses, all_tcp)
    udp = Traffic.of({"UDP": Intervals.of([(53, 53)])})
    assert covered(cluster.allowed(A, public), public.addresses, udp) == udp


def test_ipblock_also_matches_pods_in_its_range():
    egress = policy("e", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "192.168.3.0/24"}}]}]})
    assert traffic(Cluster([egress], NAMESPACES), A, B) == Traffic.everything()


def test_named_port_resolves_on_the_destination_and_protocol_must_match():
    egress = policy("e", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "web", "protocol": "UDP"}]}]})
    assert not Cluster([egress], NAMESPACES).allowed(A, B)
    egress["spec"]["egress"][0]["ports"][0]["protocol"] = "TCP"
    assert traffic(Cluster([egress], NAMESPACES), A, B) == tcp(8080)
    assert not Cluster([egress], NAMESPACES).allowed(A, WORLD)  # externals have no named ports


def test_end_port_is_a_range():
    egress = policy("e", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 8000, "endPort": 8002}]}]})
    assert traffic(Cluster([egress], NAMESPACES), A, B) == tcp(8000, 8001, 8002)


def test_pod_selector_alone_stays_in_the_policy_namespace():
    egress = policy("e", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {}}]}]})
    cluster = Cluster([egress], NAMESPACES)
    assert cluster.allowed(A, B)
    assert not cluster.allowed(A, OTHER_NS)


def test_namespace_and_pod_selector_in_one_entry_are_and_in_two_entries_or():
    both = {"namespaceSelector": {"matchLabels": {"team": "x"}}, "podSelector": {"matchLabels": {"role": "zzz"}}}
    egress = policy("e", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [both]}]})
    assert not Cluster([egress], NAMESPACES).allowed(A, OTHER_NS)
    split = [{"namespaceSelector": {"matchLabels": {"team": "x"}}}, {"podSelector": {"matchLabels": {"role": "zzz"}}}]
    egress["spec"]["egress"][0]["to"] = split
    assert Cluster([egress], NAMESPACES).allowed(A, OTHER_NS)


def test_policy_types_default_to_ingress_plus_egress_when_egress_rules_exist():
    only_ingress = policy("i", {"podSelector": {}})  # no policyTypes, no rules: denies ingress only
    cluster = Cluster([only_ingress], NAMESPACES)
    assert not cluster.allowed(A, B)
    assert cluster.allowed(A, WORLD)


@pytest.mark.parametrize(
    "selector,labels,expected",
    [
        ({"matchExpressions": [{"key": "role", "operator": "In", "values": ["a"]}]}, {"role": "a"}, True),
        ({"matchExpressions": [{"key": "role", "operator": "NotIn", "values": ["a"]}]}, {"role": "a"}, False),
        ({"matchExpressions": [{"key": "role", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "role", "operator": "DoesNotExist"}]}, {}, True),
        ({}, {"x": "y"}, True),
    ],
)
def test_label_selectors(selector, labels, expected):
    assert match_selector(selector, labels) is expected


@pytest.mark.parametrize("kind,api", [("GlobalNetworkPolicy", "crd.projectcalico.org/v1"), ("NetworkPolicy", "projectcalico.org/v3"),
                                      ("AdminNetworkPolicy", "policy.networking.k8s.io/v1alpha1")])
def test_policies_it_cannot_evaluate_are_errors(kind, api):
    with pytest.raises(PolicyError):
        Cluster([{"apiVersion": api, "kind": kind, "metadata": {"name": "x"}, "spec": {}}], NAMESPACES)
