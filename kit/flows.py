"""The flow table: the single oracle for what may talk to what.

Both backends are checked against it (kit.parity): the Compose networks (who
shares a network, which networks are internal) and the Kubernetes
NetworkPolicies (evaluated exactly by kit.netpol) must allow the flows marked
allowed here and nothing else. See shared/design.md, "The flows that must
hold".

Precision: each allowed flow names its port and its transport protocols, and
the endpoints that are not cage parts are address ranges (below), so a check
can tell "the proxy may reach public addresses over TCP" from "the proxy may
reach the metadata service". Where a backend's network layer cannot express a
denial (a Docker network has no port filter), the gap is listed in ``GAPS``
with the control that closes it instead; a gap that is not listed is a failure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kit.names import PROXY_PORT, SCANNER_PORT

# Endpoints. "agent" and "other-agent" are two different agents; "internet"
# is any public address; "dns" the resolver the platform gives the cage
# (kube-dns on kind, Docker's embedded resolver on Compose); "host" is the
# Docker host or Kubernetes node; "metadata" the cloud metadata addresses;
# "private" any other private / link-local address; "cluster-api" the
# Kubernetes API server (kind only; the Docker API socket for Compose).
ENDPOINTS = (
    "agent",
    "other-agent",
    "proxy",
    "scanner",
    "internet",
    "dns",
    "host",
    "metadata",
    "private",
    "cluster-api",
)

# The cage's own parts (containers / pods the kit runs).
CAGE_PARTS = ("agent", "other-agent", "proxy", "scanner")

# Transport protocols as NetworkPolicy names them, plus OTHER for ICMP and
# every other IP protocol (a policy rule without ports allows those too).
PROTOCOLS = ("TCP", "UDP", "SCTP", "OTHER")


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    port: int | None  # None: any port
    why: str
    protocols: tuple[str, ...] = ("TCP",)


# Everything not listed here is denied.
ALLOWED: tuple[Flow, ...] = (
    Flow("agent", "proxy", PROXY_PORT, "the agent's only route out"),
    Flow("other-agent", "proxy", PROXY_PORT, "every agent's only route out"),
    Flow("proxy", "scanner", SCANNER_PORT, "content scanning"),
    Flow("proxy", "internet", None, "only after the addon allows the destination and the scan passes"),
    Flow(
        "proxy",
        "dns",
        53,
        "the proxy resolves destinations (once, then checks the address)",
        ("UDP", "TCP"),
    ),
)

# Address ranges of the endpoints that are not cage parts, as far as they are
# addresses. Cloud metadata services: AWS/GCP/Azure/OpenStack (169.254.169.254),
# AWS ECS task metadata (169.254.170.2), Alibaba (100.100.100.200), AWS over
# IPv6 (fd00:ec2::254).
METADATA_RANGES = ("169.254.169.254/32", "169.254.170.2/32", "100.100.100.200/32", "fd00:ec2::254/128")
# Every range that is not public unicast (RFC 6890 special-purpose registries).
NON_PUBLIC_RANGES = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/8",
    "64:ff9b::/96",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)
# Public unicast space the "internet" endpoint stands for, before the
# exceptions above are taken out (IPv6: the global unicast block only).
PUBLIC_SPACE = ("0.0.0.0/0", "2000::/3")


@dataclass(frozen=True)
class Gap:
    """A flow a backend's network layer allows although the table denies it.

    Listed so that the parity check can tell a known, covered gap from a
    widening: ``closed_by`` names the control that denies the flow instead.
    """

    backend: str
    src: str
    dst: str
    why: str
    closed_by: str


_HOST_ISOLATION = (
    "host isolation: netguard drops INPUT from the cage's bridges (or the engine's isolated "
    "gateway mode); README, 'Host isolation'"
)
_ADDON_ADDRESSES = (
    "the addon's destination policy: private, link-local and metadata addresses are refused "
    "after resolution"
)
_SYMMETRIC = "a Docker network is symmetric: sharing one lets either side connect"

GAPS: tuple[Gap, ...] = (
    Gap("compose", "agent", "host", "an internal network still reaches its gateway, the host", _HOST_ISOLATION),
    Gap("compose", "other-agent", "host", "an internal network still reaches its gateway, the host", _HOST_ISOLATION),
    Gap("compose", "scanner", "host", "an internal network still reaches its gateway, the host", _HOST_ISOLATION),
    Gap("compose", "proxy", "host", "the proxy's networks reach the host", _HOST_ISOLATION + "; " + _ADDON_ADDRESSES),
    Gap("compose", "proxy", "private", "the egress network routes wherever the host routes", _ADDON_ADDRESSES),
    Gap("compose", "proxy", "metadata", "the egress network routes wherever the host routes", _ADDON_ADDRESSES),
    Gap(
        "compose",
        "proxy",
        "agent",
        _SYMMETRIC,
        "not a way out: the proxy opens no connection to agents, and it is not the adversary",
    ),
    Gap(
        "compose",
        "proxy",
        "other-agent",
        _SYMMETRIC,
        "not a way out: the proxy opens no connection to agents, and it is not the adversary",
    ),
    Gap(
        "compose",
        "scanner",
        "proxy",
        _SYMMETRIC,
        "the proxy answers 407 without an agent's credential and checks the client address "
        "against that agent's own network",
    ),
)


def allowed(src: str, dst: str, port: int | None = None, protocol: str | None = None) -> bool:
    """Is a flow from ``src`` to ``dst`` (on ``port``, over ``protocol``) allowed by the table?"""
    for flow in ALLOWED:
        if flow.src != src or flow.dst != dst:
            continue
        if flow.port is not None and port is not None and flow.port != port:
            continue
        if protocol is not None and protocol not in flow.protocols:
            continue
        return True
    return False


def denied_pairs() -> list[tuple[str, str]]:
    """Every (src, dst) pair of distinct endpoints the table denies outright."""
    pairs = []
    for src in ENDPOINTS:
        for dst in ENDPOINTS:
            if src != dst and not any(f.src == src and f.dst == dst for f in ALLOWED):
                pairs.append((src, dst))
    return pairs


def gaps(backend: str) -> tuple[Gap, ...]:
    return tuple(g for g in GAPS if g.backend == backend)


def networks(ranges: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(r) for r in ranges]
