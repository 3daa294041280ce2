"""The red team's kind component changes exactly the intended flows, evaluated with kit.netpol.

The product's cage and the red-team cage are evaluated with the attacker's
world present in both, for every ordered pair of endpoints (cage parts,
kube-dns, the outside ranges, the sink and the witness). The only differences
allowed: the proxy reaches the sink (TCP on every port, UDP 53), and no longer
the internet or kube-dns. Each widening below must be caught, naming the flow.
"""

from __future__ import annotations

import copy
import os
import shutil

import pytest

from kit import parity
from kit.ipsets import Intervals
from kit.netpol import Cluster, Traffic
from kit.redteam import kind_flows, kind_render

CONFIG = parity.load_kind_cluster_config()
POLICY = "redteam-proxy-egress-to-sink"


@pytest.fixture(scope="module")
def product() -> list[dict]:
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed on this CI machine: the product cage cannot be rendered")
        pytest.skip("kubectl is not installed: cannot render the product cage to compare with")
    return kind_render.product_cage()


def _redteam() -> list[dict]:
    return copy.deepcopy(kind_render.rendered_cage())


def _policy(docs: list[dict], name: str = POLICY) -> dict:
    return next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == name)


def _unexpected(product, redteam) -> list[str]:
    return kind_flows.unexpected(kind_flows.changes(product, redteam, kind_render.rendered_attacker(), CONFIG))


def test_the_component_changes_exactly_the_intended_flows(product):
    found = kind_flows.changes(product, _redteam(), kind_render.rendered_attacker(), CONFIG)
    assert kind_flows.unexpected(found) == [], "\n".join(map(str, found))
    assert {(c.src, c.dst, c.kind) for c in found} == set(kind_flows.EXPECTED)


def test_agents_reach_only_the_proxy_under_the_red_team_component():
    for agent in ("agent", "other-agent"):
        reach = kind_flows.reachable(kind_render.rendered_cage(), kind_render.rendered_attacker(), CONFIG, agent)
        assert reach == {"proxy": Traffic.of({"TCP": Intervals.of([(8080, 8080)])})}, reach


def test_the_sink_is_open_to_everyone_so_only_the_cage_policies_decide():
    """Control of the test above: the sink refuses nobody, so "agents cannot reach it" is the agents' own policy."""
    ends = kind_flows.peers(kind_render.rendered_cage(), kind_render.rendered_attacker(), CONFIG)
    cluster = Cluster([*kind_render.rendered_cage(), *kind_render.rendered_attacker()], {})
    assert cluster.one_side(ends["agent"], ends["sink"], "Ingress")
    assert not cluster.one_side(ends["agent"], ends["sink"], "Egress")
    witness = kind_flows.reachable(kind_render.rendered_cage(), kind_render.rendered_attacker(), CONFIG, "witness")
    assert witness["sink"] == Traffic.everything(), witness  # ICMP, UDP and TCP: the witness's controls can pass


def test_nothing_of_the_attackers_world_sends_anything_but_the_witness_to_pods():
    assert kind_flows.reachable(kind_render.rendered_cage(), kind_render.rendered_attacker(), CONFIG, "sink") == {}
    witness = kind_flows.reachable(kind_render.rendered_cage(), kind_render.rendered_attacker(), CONFIG, "witness")
    assert set(witness) <= {"sink", "dns"}, witness  # pods only; cage pods refuse it, nothing outside


def _widen_selector(docs):
    _policy(docs)["spec"]["podSelector"] = {
        "matchExpressions": [{"key": "yolo-cage.role", "operator": "In", "values": ["proxy", "agent"]}]}


def _widen_ports(docs):
    _policy(docs)["spec"]["egress"][0]["ports"].append({"protocol": "UDP"})


def _widen_peers(docs):
    _policy(docs)["spec"]["egress"][0]["to"] = [{"namespaceSelector": {}}]


def _add_ipblock(docs):
    _policy(docs)["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})


def _keep_internet(docs):
    base = kind_render.product_cage()
    docs.append(_policy(base, "proxy-egress-to-internet"))


def _agent_to_sink(docs):
    extra = copy.deepcopy(_policy(docs))
    extra["metadata"]["name"] = "redteam-agent-to-sink"
    extra["spec"]["podSelector"] = {"matchLabels": {"yolo-cage.role": "agent"}}
    docs.append(extra)


WIDENINGS = [
    ("the agents get the proxy's rule", _widen_selector, "added: agent -> sink"),
    ("every UDP port to the sink", _widen_ports, "added: proxy -> sink: TCP 1-65535; UDP 1-65535"),
    ("any pod of any namespace", _widen_peers, "proxy -> witness"),
    ("an ipBlock beside the sink", _add_ipblock, "added: proxy -> metadata"),
    ("the internet is left open", _keep_internet, "removed: proxy -> internet: nothing"),
    ("an agent policy to the sink", _agent_to_sink, "added: agent -> sink"),
]


@pytest.mark.parametrize("what,widen,word", WIDENINGS, ids=[w[0] for w in WIDENINGS])
def test_each_widening_of_the_component_is_caught(product, what, widen, word):
    docs = _redteam()
    assert _unexpected(product, docs) == []  # control: clean before
    widen(docs)
    problems = _unexpected(product, docs)
    assert any(word in p for p in problems), problems
