"""The flow table: the single oracle for what may talk to what.

Both backends are checked against it: the Compose networks (who shares a
network, which networks are internal) and the Kubernetes NetworkPolicies
(evaluated by kit.netpol) must allow exactly the flows marked allowed here,
and nothing else. See shared/design.md, "The flows that must hold".
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.names import PROXY_PORT, SCANNER_PORT

# Endpoints. "agent" and "other-agent" are two different agents; "internet"
# is any public address; "dns" is any resolver outside the cage; "host" is the
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


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    port: int | None  # None: any port
    why: str


# Everything not listed here is denied.
ALLOWED: tuple[Flow, ...] = (
    Flow("agent", "proxy", PROXY_PORT, "the agent's only route out"),
    Flow("proxy", "scanner", SCANNER_PORT, "content scanning"),
    Flow("proxy", "internet", None, "only after the addon allows the destination and the scan passes"),
    Flow("proxy", "dns", 53, "the proxy resolves destinations (once, then checks the address)"),
)


def allowed(src: str, dst: str, port: int | None = None) -> bool:
    """Is a flow from ``src`` to ``dst`` (on ``port``) allowed by the table?"""
    for flow in ALLOWED:
        if flow.src == src and flow.dst == dst and (flow.port is None or port is None or flow.port == port):
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
