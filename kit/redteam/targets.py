"""The addresses and names an attack aims at, found in the running cage.

The catalog names targets symbolically (``${sink_ip}``, ``${proxy_ip}``,
``${other_agent_ip}``...); a backend-specific discovery fills a
:class:`Targets`, and :func:`Targets.values` adds the derived forms (the
sink's address as a decimal integer, in hex, octal, short and IPv6 forms).
A technique whose targets are missing (one agent only: no "other agent") is
reported as skipped with the reason, never silently passed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

ATTACKER_DOMAIN = "exfil.attacker.test"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class Targets:
    agent: str
    proxy_host: str  # the name the agent's proxy settings use
    proxy_ip: str  # the proxy's address on the agent's network
    proxy_port: int
    sink_ip: str
    sink_name: str
    scanner_host: str = "scanner"
    scanner_ip: str | None = None
    other_agent: str | None = None
    other_agent_ip: str | None = None
    gateway_ip: str | None = None  # the Docker host, as seen from the agent's network
    host_ips: tuple[str, ...] = ()  # the host's other addresses (docker0, its own)
    host_port: int | None = None  # a listener of the red team on the host
    proxy_egress_ip: str | None = None  # where legitimate traffic reaches the sink from
    attacker_domain: str = ATTACKER_DOMAIN
    # Probes that make the proxy connect to addresses off this machine (cloud
    # metadata) are sent only when the proxy has no route there (a test cage)
    # or the operator allowed it.
    offhost_ok: bool = False
    # Addresses that look external (cloud metadata) but belong to this machine
    # in a test world: an agent's probe may be aimed at them directly.
    local_addresses: frozenset[str] = frozenset()
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Backend-specific names (kind: the sink pod's own address, the API server's and
    # kube-dns's Service addresses) for rows a backend adapts (World.adapt).
    extra: tuple[tuple[str, str], ...] = ()

    def values(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {
            "agent": self.agent,
            "proxy_host": self.proxy_host,
            "proxy_ip": self.proxy_ip,
            "proxy_port": str(self.proxy_port),
            "sink_ip": self.sink_ip,
            "sink_name": self.sink_name,
            "scanner_host": self.scanner_host,
            "scanner_ip": self.scanner_ip,
            "other_agent": self.other_agent,
            "other_agent_ip": self.other_agent_ip,
            "gateway_ip": self.gateway_ip,
            "host_ip": self.host_ips[0] if self.host_ips else None,
            "host_ip2": self.host_ips[1] if len(self.host_ips) > 1 else None,
            "host_port": str(self.host_port) if self.host_port else None,
            "domain": self.attacker_domain,
        }
        out.update(dict(self.extra))
        out.update(ip_forms("sink_ip", self.sink_ip))
        if self.gateway_ip:
            out["gateway_dashed"] = self.gateway_ip.replace(".", "-")
        return out


def ip_forms(name: str, address: str) -> dict[str, str]:
    """The same IPv4 address written the ways URL parsers and resolvers accept."""
    ip = ipaddress.IPv4Address(address)
    a, b, c, d = ip.packed
    return {
        f"{name}_int": str(int(ip)),
        f"{name}_hex": hex(int(ip)),
        f"{name}_octal": ".".join(f"0{x:o}" for x in (a, b, c, d)),
        f"{name}_short": f"{a}.{b}.{c * 256 + d}",
        f"{name}_v4mapped": f"::ffff:{address}",
        f"{name}_nat64": f"64:ff9b::{address}",
    }


def placeholders(value: object) -> set[str]:
    """Every ``${name}`` in a JSON-like structure."""
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, list | tuple):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    return set()


def fill(value: object, values: dict[str, str | None]) -> object:
    """Replace ``${name}``; the caller has checked every name has a value."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)
    if isinstance(value, list | tuple):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    return value
