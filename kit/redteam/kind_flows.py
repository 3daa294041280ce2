"""What the red team's component changes in a cage's NetworkPolicies, evaluated exactly.

The red-team cage must be the product's cage plus a way for the proxy to reach
the attacker's sink, and nothing that could let an attack through that the
product would stop. :func:`changes` evaluates both renderings with
:mod:`kit.netpol` (the attacker's world present in both) for every ordered
pair of endpoints, and lists each flow one allows and the other does not.
:data:`EXPECTED` is the whole intended difference; anything else, a widening
above all, is a finding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kit import parity
from kit.ipsets import Addresses, Intervals
from kit.names import LABEL_ROLE
from kit.netpol import ALL_PORTS, Cluster, External, Peer, Piece, Traffic, covered, workload_pods
from kit.redteam import kind_render

ADDED, REMOVED = "added", "removed"
# Endpoints of the attacker's world, by role (the node stand-in uses the node's
# network: NetworkPolicy sees it as the "host" endpoint).
ATTACKER_ROLES = ("sink", kind_render.ROLE_WITNESS)


@dataclass(frozen=True)
class Change:
    src: str
    dst: str
    kind: str  # added | removed
    traffic: Traffic
    addresses: Addresses | None = None  # the outside side's addresses; None between pods

    def __str__(self) -> str:
        where = f" to/from {self.addresses.describe()}" if self.addresses is not None else ""
        return f"{self.kind}: {self.src} -> {self.dst}: {self.traffic.describe()}{where}"


def _tcp_all() -> Traffic:
    return Traffic.of({"TCP": ALL_PORTS})


def _dns() -> Traffic:
    return Traffic.of({"UDP": Intervals.of([(53, 53)]), "TCP": Intervals.of([(53, 53)])})


# The whole intended difference: (src, dst, kind) -> traffic.
EXPECTED: Mapping[tuple[str, str, str], Traffic] = {
    # The sink stands in for the internet (every TCP port) and is the proxy's resolver.
    ("proxy", "sink", ADDED): _tcp_all() | Traffic.of({"UDP": Intervals.of([(53, 53)])}),
    # Nothing real is reachable: no internet, no resolver that forwards off this machine.
    ("proxy", "internet", REMOVED): _tcp_all(),
    ("proxy", "dns", REMOVED): _dns(),
}


def peers(cage: Sequence[Mapping[str, Any]], attacker: Sequence[Mapping[str, Any]],
          cluster_config: Mapping[str, Any]) -> dict[str, Peer]:
    """The flow table's endpoints (kit.parity) plus the attacker's sink and witness."""
    out = parity.kind_peers(cage, cluster_config)
    pod_net = Addresses.of([cluster_config["networking"]["podSubnet"]])
    for spec, pod in workload_pods(attacker, pod_net):
        role = pod.labels.get(LABEL_ROLE, "")
        if role in ATTACKER_ROLES and not spec.get("hostNetwork"):
            out[role] = pod
    missing = [r for r in ATTACKER_ROLES if r not in out]
    if missing:
        raise ValueError(f"the attacker's world has no {', '.join(missing)} pod")
    return out


def _pairs(all_peers: Mapping[str, Peer]) -> Iterable[tuple[str, str]]:
    for src, a in all_peers.items():
        for dst, b in all_peers.items():
            if src != dst and not (isinstance(a, External) and isinstance(b, External)):
                yield src, dst


def _beyond(pieces: Sequence[Piece], other: Sequence[Piece]) -> list[Piece]:
    """The parts of ``pieces`` that ``other`` does not allow."""
    out = []
    for piece in pieces:
        missing = covered(other, piece.addresses, piece.traffic)
        if missing:
            out.append(Piece(piece.addresses, missing))
    return out


def changes(product: Sequence[Mapping[str, Any]], redteam: Sequence[Mapping[str, Any]],
            attacker: Sequence[Mapping[str, Any]], cluster_config: Mapping[str, Any]) -> list[Change]:
    """Every flow the red-team cage allows that the product does not, and the reverse."""
    namespaces = {"kube-system": {"kubernetes.io/metadata.name": "kube-system"}}
    before = Cluster([*product, *attacker], namespaces)
    after = Cluster([*redteam, *attacker], namespaces)
    ends = peers(redteam, attacker, cluster_config)
    out = []
    for src, dst in _pairs(ends):
        was, now = before.allowed(ends[src], ends[dst]), after.allowed(ends[src], ends[dst])
        out += [Change(src, dst, ADDED, p.traffic, p.addresses) for p in _beyond(now, was)]
        out += [Change(src, dst, REMOVED, p.traffic, p.addresses) for p in _beyond(was, now)]
    return out


def unexpected(found: Sequence[Change]) -> list[str]:
    """Differences from :data:`EXPECTED`, each in words (empty: the component does exactly its job)."""
    got: dict[tuple[str, str, str], Traffic] = {}
    for change in found:
        key = (change.src, change.dst, change.kind)
        got[key] = got.get(key, Traffic()) | change.traffic
    problems = [f"{k[2]}: {k[0]} -> {k[1]}: {t.describe()} (not intended)" for k, t in got.items() if k not in EXPECTED]
    for key, want in EXPECTED.items():
        have = got.get(key, Traffic())
        if have != want:
            problems.append(f"{key[2]}: {key[0]} -> {key[1]}: {have.describe() or 'nothing'}, intended {want.describe()}")
    return problems


def reachable(cluster_manifests: Sequence[Mapping[str, Any]], attacker: Sequence[Mapping[str, Any]],
              cluster_config: Mapping[str, Any], src: str) -> dict[str, Traffic]:
    """Everything ``src`` may send to, per endpoint, in one rendering (pods only: pieces merged)."""
    cluster = Cluster([*cluster_manifests, *attacker], {"kube-system": {"kubernetes.io/metadata.name": "kube-system"}})
    ends = peers(cluster_manifests, attacker, cluster_config)
    out = {}
    for dst, peer in ends.items():
        if dst == src:
            continue
        traffic = Traffic()
        for piece in cluster.allowed(ends[src], peer):
            traffic = traffic | piece.traffic
        if traffic:
            out[dst] = traffic
    return out

