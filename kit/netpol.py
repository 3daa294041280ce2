"""A small, exact evaluator of Kubernetes NetworkPolicy (networking.k8s.io/v1).

Given the rendered manifests and a description of the peers (the cage's pods,
the cluster's DNS pods, address ranges outside), it answers: what traffic
(protocol, ports, and for a peer outside the cluster, which of its addresses)
may go from a source to a destination. It follows the API's semantics:

- a pod selected by no policy of a direction is open in that direction;
- otherwise only what some rule of a selecting policy allows passes, and
  egress from the source and ingress to the destination must both allow it;
- a rule with no peers matches every peer, a rule with no ports all traffic
  (every protocol, ICMP included: ``OTHER`` here);
- ``ipBlock`` also matches pods whose address lies in it (Calico applies
  ipBlocks to pod addresses); a pod's address is only known to lie in the pod
  network, so any overlap counts as a match (never under-reports);
- named ports resolve on the destination pod.

Policies it cannot evaluate exactly (Calico's own kinds, AdminNetworkPolicy)
are an error, never ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kit.errors import CageError
from kit.flows import PROTOCOLS
from kit.ipsets import Addresses, Intervals

ALL_PORTS = Intervals.of([(1, 65535)])
_NO_PORT = Intervals.of([(0, 0)])  # OTHER (ICMP ...) has no ports
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
_UNSUPPORTED_POLICY_KINDS = {
    "GlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
    "CiliumNetworkPolicy",
    "CiliumClusterwideNetworkPolicy",
}


class PolicyError(CageError):
    """The manifests hold something the evaluator cannot decide exactly."""


@dataclass(frozen=True)
class Traffic:
    """Ports per protocol (OTHER: {0} when allowed)."""

    ports: tuple[tuple[str, Intervals], ...] = ()

    @classmethod
    def of(cls, by_proto: Mapping[str, Intervals]) -> Traffic:
        return cls(tuple((p, by_proto[p]) for p in PROTOCOLS if p in by_proto and by_proto[p]))

    @classmethod
    def everything(cls) -> Traffic:
        return cls.of({p: (_NO_PORT if p == "OTHER" else ALL_PORTS) for p in PROTOCOLS})

    def get(self, proto: str) -> Intervals:
        return dict(self.ports).get(proto, Intervals())

    def _combine(self, other: Traffic, op) -> Traffic:
        return Traffic.of({p: op(self.get(p), other.get(p)) for p in PROTOCOLS})

    def __or__(self, other: Traffic) -> Traffic:
        return self._combine(other, lambda a, b: a | b)

    def __and__(self, other: Traffic) -> Traffic:
        return self._combine(other, lambda a, b: a & b)

    def __sub__(self, other: Traffic) -> Traffic:
        return self._combine(other, lambda a, b: a - b)

    def __bool__(self) -> bool:
        return bool(self.ports)

    def describe(self) -> str:
        parts = []
        for proto, ports in self.ports:
            if proto == "OTHER":
                parts.append("other IP protocols (ICMP ...)")
            else:
                spans = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports.spans)
                parts.append(f"{proto} {spans}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicy sees it."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    addresses: Addresses  # where its IP may lie (the pod network)
    named_ports: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # name -> (protocol, port)


@dataclass(frozen=True)
class External:
    """Addresses outside the cluster's pods (the internet, the node, metadata ...)."""

    name: str
    addresses: Addresses


Peer = Pod | External


@dataclass(frozen=True)
class Piece:
    """Traffic allowed to or from ``addresses`` of the external side (None: pod to pod)."""

    addresses: Addresses | None
    traffic: Traffic


def match_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise PolicyError(f"unknown label selector operator {op!r}")
    return True


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    spec: Mapping[str, Any]

    def types(self) -> set[str]:
        declared = self.spec.get("policyTypes")
        if declared:
            return set(declared)
        return {"Ingress"} | ({"Egress"} if "egress" in self.spec else set())

    def selects(self, pod: Pod, direction: str) -> bool:
        return (
            pod.namespace == self.namespace
            and direction in self.types()
            and match_selector(self.spec.get("podSelector"), pod.labels)
        )

    def rules(self, direction: str) -> list[Mapping[str, Any]]:
        return list(self.spec.get("ingress" if direction == "Ingress" else "egress") or [])


class Cluster:
    """The NetworkPolicies of a set of manifests, plus the namespaces' labels."""

    def __init__(self, manifests: Iterable[Mapping[str, Any]], namespace_labels: Mapping[str, Mapping[str, str]]):
        self.policies: list[Policy] = []
        self.namespace_labels = {ns: dict(labels) for ns, labels in namespace_labels.items()}
        for doc in manifests:
            self._take(doc)

    def _take(self, doc: Mapping[str, Any]) -> None:
        kind = doc.get("kind")
        if kind in _UNSUPPORTED_POLICY_KINDS or str(doc.get("apiVersion", "")).startswith(
            ("projectcalico.org/", "crd.projectcalico.org/")
        ):
            raise PolicyError(f"{kind} {doc['metadata']['name']!r}: not standard NetworkPolicy; cannot evaluate")
        if kind == "Namespace":
            name = doc["metadata"]["name"]
            labels = dict(doc["metadata"].get("labels") or {})
            # The API server sets this label on every namespace.
            labels["kubernetes.io/metadata.name"] = name
            self.namespace_labels[name] = labels
        if kind == "NetworkPolicy":
            meta = doc["metadata"]
            if "namespace" not in meta:
                raise PolicyError(f"NetworkPolicy {meta['name']!r} has no namespace (render with one)")
            self.policies.append(Policy(meta["namespace"], meta["name"], doc.get("spec") or {}))

    # --- one direction --------------------------------------------------

    def _selecting(self, pod: Pod, direction: str) -> list[Policy]:
        return [p for p in self.policies if p.selects(pod, direction)]

    def _peer_match(self, policy: Policy, entry: Mapping[str, Any], peer: Peer) -> Addresses | None:
        """Which of ``peer``'s addresses one ``to``/``from`` entry matches (None: none)."""
        if "ipBlock" in entry:
            block = Addresses.of([entry["ipBlock"]["cidr"]]) - Addresses.of(entry["ipBlock"].get("except") or [])
            hit = block & peer.addresses
            return hit if hit else None
        if isinstance(peer, External):
            return None
        if "namespaceSelector" in entry:
            ns_labels = self.namespace_labels.get(peer.namespace, {"kubernetes.io/metadata.name": peer.namespace})
            if not match_selector(entry["namespaceSelector"], ns_labels):
                return None
        elif peer.namespace != policy.namespace:
            return None
        if "podSelector" in entry and not match_selector(entry["podSelector"], peer.labels):
            return None
        return peer.addresses

    def _rule_traffic(self, rule: Mapping[str, Any], dst: Peer) -> Traffic:
        ports = rule.get("ports")
        if not ports:
            return Traffic.everything()
        by_proto: dict[str, Intervals] = {}
        for entry in ports:
            proto = entry.get("protocol", "TCP")
            span = self._port_span(entry, proto, dst)
            by_proto[proto] = by_proto.get(proto, Intervals()) | span
        return Traffic.of(by_proto)

    @staticmethod
    def _port_span(entry: Mapping[str, Any], proto: str, dst: Peer) -> Intervals:
        port = entry.get("port")
        if port is None:
            return ALL_PORTS
        if isinstance(port, str) and not port.isdigit():
            named = dst.named_ports.get(port) if isinstance(dst, Pod) else None
            if named is None or named[0] != proto:
                return Intervals()
            return Intervals.of([(named[1], named[1])])
        end = entry.get("endPort", int(port))
        return Intervals.of([(int(port), int(end))])

    def _direction(self, pod: Pod, other: Peer, direction: str, dst: Peer) -> list[Piece]:
        """What ``pod``'s policies of ``direction`` allow with ``other`` (to ``dst``'s ports)."""
        selecting = self._selecting(pod, direction)
        if not selecting:
            return [Piece(_side(other, other.addresses), Traffic.everything())]
        key = "from" if direction == "Ingress" else "to"
        pieces = []
        for policy in selecting:
            for rule in policy.rules(direction):
                entries = rule.get(key) or [{}]
                for entry in entries:
                    hit = other.addresses if not entry else self._peer_match(policy, entry, other)
                    if hit is not None:
                        pieces.append(Piece(_side(other, hit), self._rule_traffic(rule, dst)))
        return pieces

    def one_side(self, src: Peer, dst: Peer, direction: str) -> list[Piece]:
        """What the source's egress (or the destination's ingress) policies alone allow."""
        if direction == "Egress":
            if not isinstance(src, Pod):
                raise PolicyError("egress policies apply to pods only")
            return _merge(self._direction(src, dst, "Egress", dst))
        if not isinstance(dst, Pod):
            raise PolicyError("ingress policies apply to pods only")
        return _merge(self._direction(dst, src, "Ingress", dst))

    # --- both directions -------------------------------------------------

    def allowed(self, src: Peer, dst: Peer) -> list[Piece]:
        """The traffic from ``src`` to ``dst`` that both ends' policies allow."""
        if isinstance(src, External) and isinstance(dst, External):
            raise PolicyError("both ends are outside the cluster: NetworkPolicy has no say")
        egress = self._direction(src, dst, "Egress", dst) if isinstance(src, Pod) else None
        ingress = self._direction(dst, src, "Ingress", dst) if isinstance(dst, Pod) else None
        if egress is None:
            return _merge(ingress or [])
        if ingress is None:
            return _merge(egress)
        # Pod to pod: addresses do not matter any more, only the traffic both allow.
        out = _union(p.traffic for p in egress) & _union(p.traffic for p in ingress)
        return [Piece(None, out)] if out else []


def _side(peer: Peer, addresses: Addresses) -> Addresses | None:
    return addresses if isinstance(peer, External) else None


def _union(traffics: Iterable[Traffic]) -> Traffic:
    out = Traffic()
    for t in traffics:
        out = out | t
    return out


def _merge(pieces: Sequence[Piece]) -> list[Piece]:
    """Pod-side pieces collapse to one; external pieces are kept per address set."""
    pod_side = [p for p in pieces if p.addresses is None]
    out = [p for p in pieces if p.addresses is not None and p.traffic]
    merged = _union(p.traffic for p in pod_side)
    return out + ([Piece(None, merged)] if merged else [])


def covered(pieces: Sequence[Piece], whole: Addresses | None, want: Traffic) -> Traffic:
    """The part of ``want`` that the pieces do NOT allow for every address of ``whole``."""
    missing: dict[str, Intervals] = {}
    for proto in PROTOCOLS:
        need = want.get(proto)
        if not need:
            continue
        # Elementary port intervals: between any two boundaries the pieces agree.
        cuts = sorted({lo for p in pieces for lo, _ in p.traffic.get(proto).spans}
                      | {hi + 1 for p in pieces for _, hi in p.traffic.get(proto).spans}
                      | {lo for lo, _ in need.spans} | {hi + 1 for _, hi in need.spans})
        for lo, nxt in zip(cuts, cuts[1:], strict=False):
            span = Intervals.of([(lo, nxt - 1)])
            if not (span & need):
                continue
            holders = [p for p in pieces if p.traffic.get(proto).covers(span)]
            if whole is None:
                ok = bool(holders)
            else:
                reach = Addresses()
                for p in holders:
                    reach = reach | (p.addresses or whole)
                ok = reach.covers(whole)
            if not ok:
                missing[proto] = missing.get(proto, Intervals()) | span
    return Traffic.of(missing)


def workload_pods(
    manifests: Iterable[Mapping[str, Any]], addresses: Addresses
) -> list[tuple[Mapping[str, Any], Pod]]:
    """Each pod template (or Pod) of the manifests, with its pod spec."""
    out = []
    for doc in manifests:
        kind = doc.get("kind")
        if kind == "Pod":
            meta, spec = doc["metadata"], doc["spec"]
        elif kind in _WORKLOADS:
            meta, spec = doc["spec"]["template"]["metadata"], doc["spec"]["template"]["spec"]
        else:
            continue
        namespace = doc["metadata"].get("namespace", "default")
        named = {
            p["name"]: (p.get("protocol", "TCP"), int(p["containerPort"]))
            for c in spec.get("containers", [])
            for p in c.get("ports", []) or []
            if "name" in p
        }
        name = doc["metadata"]["name"]
        out.append((spec, Pod(name, namespace, dict(meta.get("labels") or {}), addresses, named)))
    return out
