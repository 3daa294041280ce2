"""Parity: both backends allow exactly the flows of the flow table (kit.flows).

- kind: the rendered NetworkPolicies are evaluated exactly (kit.netpol) for
  every pair of endpoints, per protocol and port, and for peers outside the
  cluster per address. Anything allowed beyond the table is an ``extra``
  finding, anything in the table that is not allowed a ``missing`` one.
- Compose: reachability follows from the Compose file (who shares which
  network, which networks are internal, network modes, the Docker socket,
  published ports). Docker networks have no port filter, so Compose is
  compared per pair of endpoints; the table's known network-layer gaps
  (``kit.flows.GAPS``, each naming the control that closes it) are accepted,
  anything else beyond the table is a finding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kit import flows
from kit.errors import CageError
from kit.ipsets import Addresses, Intervals
from kit.names import LABEL_AGENT, LABEL_ROLE
from kit.netpol import ALL_PORTS, Cluster, External, Peer, Pod, Traffic, covered, workload_pods

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "compose" / "compose.yaml"
KIND_CLUSTER_FILE = REPO / "kind" / "cluster.yaml"

# The node's addresses: Docker's default address pools (kind's nodes are
# containers on a Docker network) and the IPv6 unique-local block kind uses.
NODE_RANGES = ("172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
# kube-dns as every kubeadm cluster (kind included) labels and names it.
KUBE_DNS_LABELS = {"k8s-app": "kube-dns"}
KUBE_DNS_PORTS = {"dns": ("UDP", 53), "dns-tcp": ("TCP", 53)}
# The host is the operator's machine: its traffic to the cage (kubelet
# probes, `docker exec`) is trusted and is not a flow the table governs.
TRUSTED_SOURCES = ("host",)


@dataclass(frozen=True)
class Finding:
    backend: str
    kind: str  # extra | missing
    src: str
    dst: str
    detail: str = ""

    def __str__(self) -> str:
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.backend}: {self.kind} flow {self.src} -> {self.dst}{tail}"


def expected_traffic(src: str, dst: str) -> Traffic:
    """What the table allows from ``src`` to ``dst``, as protocol/port sets."""
    out = Traffic()
    for flow in flows.ALLOWED:
        if flow.src == src and flow.dst == dst:
            span = ALL_PORTS if flow.port is None else Intervals.of([(flow.port, flow.port)])
            out = out | Traffic.of({p: span for p in flow.protocols})
    return out


# --- kind ---------------------------------------------------------------------


def _families(addresses: Addresses, ip_family: str) -> Addresses:
    if ip_family == "ipv4":
        return Addresses(addresses.v4, Intervals())
    if ip_family == "ipv6":
        return Addresses(Intervals(), addresses.v6)
    return addresses


def kind_peers(manifests: Sequence[Mapping[str, Any]], cluster_config: Mapping[str, Any]) -> dict[str, Peer]:
    """The table's endpoints as NetworkPolicy sees them on a kind cluster."""
    net = cluster_config.get("networking") or {}
    family = net.get("ipFamily", "ipv4")
    pod_net = Addresses.of([net["podSubnet"]])
    pods = [pod for _, pod in workload_pods(manifests, pod_net)]
    by_role: dict[str, list[Pod]] = {}
    for pod in pods:
        by_role.setdefault(pod.labels.get(LABEL_ROLE, ""), []).append(pod)
    for role in ("proxy", "scanner"):
        if len(by_role.get(role, [])) != 1:
            raise CageError(f"expected exactly one {role} workload, found {len(by_role.get(role, []))}")
    agents = sorted(by_role.get("agent", []), key=lambda p: p.labels.get(LABEL_AGENT, ""))
    if not agents:
        raise CageError("no agent workload in the manifests")
    special = Addresses.of(flows.NON_PUBLIC_RANGES)
    metadata = Addresses.of(flows.METADATA_RANGES)
    node = _families(Addresses.of(NODE_RANGES), family)
    peers: dict[str, Peer] = {
        "agent": agents[0],
        "proxy": by_role["proxy"][0],
        "scanner": by_role["scanner"][0],
        "dns": Pod("kube-dns", "kube-system", KUBE_DNS_LABELS, pod_net, KUBE_DNS_PORTS),
        "internet": External("internet", _families(Addresses.of(flows.PUBLIC_SPACE) - special, family)),
        "metadata": External("metadata", _families(metadata, family)),
        "private": External("private", _families(special - metadata, family)),
        "host": External("host", node),
        # The API server runs in the node's network namespace (:6443); the
        # `kubernetes` Service address is translated to it before policy applies.
        "cluster-api": External("cluster-api", node),
    }
    if len(agents) > 1:
        peers["other-agent"] = agents[1]
    return peers


def _kind_pairs(peers: Mapping[str, Peer]) -> Iterable[tuple[str, str]]:
    for src in flows.ENDPOINTS:
        for dst in flows.ENDPOINTS:
            if src == dst or src not in peers or dst not in peers or src in TRUSTED_SOURCES:
                continue
            if isinstance(peers[src], External) and isinstance(peers[dst], External):
                continue
            if src not in flows.CAGE_PARTS and dst not in flows.CAGE_PARTS:
                continue  # neither end is the cage's (kube-dns to the internet ...)
            yield src, dst


def check_kind(manifests: Sequence[Mapping[str, Any]], cluster_config: Mapping[str, Any]) -> list[Finding]:
    """Every difference between the NetworkPolicies and the flow table.

    Each layer is held to the table on its own: the source's egress policies
    and the destination's ingress policies must each allow no more than the
    table (so widening one side is caught even while the other still blocks),
    and together they must allow all of it.
    """
    peers = kind_peers(manifests, cluster_config)
    cluster = Cluster(manifests, {"kube-system": {"kubernetes.io/metadata.name": "kube-system"}})
    findings = []
    for src, dst in _kind_pairs(peers):
        want = expected_traffic(src, dst)
        for side, pieces in _sides(cluster, peers, src, dst):
            for piece in pieces:
                extra = piece.traffic - want
                if extra:
                    where = f" to/from {piece.addresses.describe()}" if piece.addresses is not None else ""
                    findings.append(Finding("kind", "extra", src, dst, f"{side} allows {extra.describe()}{where}"))
        if want:
            outside = peers[dst] if isinstance(peers[dst], External) else peers[src]
            whole = outside.addresses if isinstance(outside, External) else None
            missing = covered(cluster.allowed(peers[src], peers[dst]), whole, want)
            if missing:
                findings.append(Finding("kind", "missing", src, dst, missing.describe()))
    return findings


def _sides(cluster: Cluster, peers: Mapping[str, Peer], src: str, dst: str):
    """The one-sided verdicts to hold to the table: the cage's own policies only."""
    if src in flows.CAGE_PARTS:
        yield f"egress of {src}", cluster.one_side(peers[src], peers[dst], "Egress")
    if dst in flows.CAGE_PARTS:
        yield f"ingress of {dst}", cluster.one_side(peers[src], peers[dst], "Ingress")


def load_kind_cluster_config(path: Path = KIND_CLUSTER_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# --- Compose --------------------------------------------------------------------


def _labels(service: Mapping[str, Any]) -> dict[str, str]:
    labels = service.get("labels") or {}
    if isinstance(labels, list):
        return dict(item.split("=", 1) for item in labels)
    return {k: str(v) for k, v in labels.items()}


def _service_networks(name: str, services: Mapping[str, Any]) -> tuple[str, set[str]]:
    """(network mode, the networks the service is attached to)."""
    service = services[name]
    mode = service.get("network_mode")
    if mode is None:
        nets = service.get("networks")
        return "bridge", set(nets or ["default"])
    if mode.startswith("service:"):
        return _service_networks(mode.split(":", 1)[1], services)
    if mode in ("host", "none"):
        return mode, set()
    raise CageError(f"service {name}: network_mode {mode!r} cannot be evaluated")


def compose_endpoints(project: Mapping[str, Any]) -> dict[str, str]:
    """Service name -> endpoint of the table, by the ``yolo-cage.role`` label."""
    out: dict[str, str] = {}
    agents = []
    for name, service in (project.get("services") or {}).items():
        role = _labels(service).get(LABEL_ROLE)
        if role == "agent":
            agents.append((_labels(service).get(LABEL_AGENT, name), name))
        elif role in ("proxy", "scanner"):
            out[name] = role
        elif role == "netguard" and service.get("network_mode") == "host":
            out[name] = "host"  # it lives in the host's network namespace: it is the host
        else:
            raise CageError(f"service {name}: role {role!r} is not in the flow table")
    for i, (_, name) in enumerate(sorted(agents)):
        out[name] = "agent" if i == 0 else "other-agent"
    return out


def _docker_socket(service: Mapping[str, Any]) -> bool:
    for volume in service.get("volumes") or []:
        source = volume.split(":", 1)[0] if isinstance(volume, str) else str(volume.get("source", ""))
        if source.rstrip("/").endswith("docker.sock"):
            return True
    return False


def _reaches_host(network: Mapping[str, Any] | None) -> bool:
    """Every bridge network's gateway is the host, unless the engine isolates it."""
    opts = (network or {}).get("driver_opts") or {}
    isolated_v4 = opts.get("com.docker.network.bridge.gateway_mode_ipv4") == "isolated"
    isolated_v6 = opts.get("com.docker.network.bridge.gateway_mode_ipv6") == "isolated" or not (network or {}).get("enable_ipv6")
    return not ((network or {}).get("internal") and isolated_v4 and isolated_v6)


def compose_pairs(project: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (src, dst) pairs of endpoints the Compose networks let through."""
    services = project.get("services") or {}
    networks = project.get("networks") or {}
    endpoints = compose_endpoints(project)
    attached = {name: _service_networks(name, services) for name in services}
    pairs: set[tuple[str, str]] = set()
    for name, src in endpoints.items():
        mode, nets = attached[name]
        outside = mode == "host" or any(not (networks.get(n) or {}).get("internal") for n in nets)
        for other, dst in endpoints.items():
            if other != name and (mode == "host" and attached[other][0] == "host" or nets & attached[other][1]):
                pairs.add((src, dst))
        if outside:
            pairs |= {(src, dst) for dst in ("internet", "dns", "private", "metadata")}
        if mode == "host" or any(_reaches_host(networks.get(n)) for n in nets):
            pairs.add((src, "host"))
        if _docker_socket(services[name]):
            pairs.add((src, "cluster-api"))
        if services[name].get("ports"):
            pairs |= {("internet", src), ("private", src)}
    return {p for p in pairs if p[0] != p[1] and p[0] not in TRUSTED_SOURCES}


def check_compose(project: Mapping[str, Any]) -> list[Finding]:
    """Every difference between the Compose networks and the flow table (gaps accepted)."""
    present = set(compose_endpoints(project).values()) | {"internet", "dns", "private", "metadata", "host", "cluster-api"}
    derived = compose_pairs(project)
    table = {(f.src, f.dst) for f in flows.ALLOWED}
    known = {(g.src, g.dst) for g in flows.gaps("compose")}
    findings = [Finding("compose", "extra", s, d, "not in the flow table") for s, d in sorted(derived - table - known)]
    findings += [
        Finding("compose", "missing", s, d, "in the flow table but not reachable")
        for s, d in sorted(table - derived)
        if s in present and d in present
    ]
    return findings


def stale_gaps(project: Mapping[str, Any]) -> list[flows.Gap]:
    """Gaps the table lists for Compose that this project does not have."""
    derived = compose_pairs(project)
    present = set(compose_endpoints(project).values()) | {"host"}
    return [
        g for g in flows.gaps("compose") if g.src in present and g.dst in present and (g.src, g.dst) not in derived
    ]


class _ComposeLoader(yaml.SafeLoader):
    """Compose's merge tags (!reset, !override) read as their plain values."""


_ComposeLoader.add_multi_constructor(
    "!",
    lambda loader, _tag, node: (
        loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)
    ),
)


def load_compose(path: Path = COMPOSE_FILE, *overlays: Path) -> dict[str, Any]:
    """The Compose file with overlays merged (mappings merged, other values replaced)."""
    if not path.exists():
        raise CageError(f"{path} does not exist")
    project = yaml.load(path.read_text(), Loader=_ComposeLoader)  # noqa: S506 - SafeLoader subclass
    for overlay in overlays:
        _merge(project, yaml.load(overlay.read_text(), Loader=_ComposeLoader))  # noqa: S506
    return project


def _merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
