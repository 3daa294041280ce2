"""Destination decisions: may this request go to this host, port and address?

Three pure questions, asked at different moments:
- :func:`decide_name` at the earliest hook (CONNECT target or request URL):
  host syntax, ports, the blocklist, IP literals, allowlist mode;
- :func:`decide_addresses` once the name is resolved: every address it has
  must be public (or in ``unsafe_allow_private_networks``, never metadata);
- :func:`agreement`: the CONNECT target, the TLS SNI and the Host header
  (or :authority) of each request inside must all name the same host.

Nothing here imports mitmproxy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from addon.addresses import AddressCheck, IPAddress, IPNetwork, check
from addon.decision import Decision, allow, block
from addon.hostnames import Host, HostError, matches, parse_host
from addon.policy import Destinations


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    blocked: tuple[str, ...]
    allowlist: tuple[str, ...] | None  # None: blocklist mode
    ports: frozenset[int]
    ip_literals: bool
    raw_tunnels: bool
    private: tuple[IPNetwork, ...]
    overrides: Mapping[str, IPAddress]

    @classmethod
    def from_policy(cls, d: Destinations) -> DestinationPolicy:
        return cls(
            blocked=d.blocked_hosts,
            allowlist=d.allowlist if d.mode == "allowlist" else None,
            ports=frozenset(d.ports),
            ip_literals=d.unsafe_allow_ip_literals,
            raw_tunnels=d.unsafe_allow_raw_tunnels,
            private=tuple(d.unsafe_allow_private_networks),
            overrides=dict(d.unsafe_host_overrides),
        )


def host_or_refusal(raw: str) -> Host | Decision:
    try:
        return parse_host(raw)
    except HostError as exc:
        return block("invalid-host", "destinations", str(exc))


def decide_name(policy: DestinationPolicy, raw_host: str, port: int) -> tuple[Host | None, Decision]:
    host = host_or_refusal(raw_host)
    if isinstance(host, Decision):
        return None, host
    return host, _decide_host(policy, host, port)


def _decide_host(policy: DestinationPolicy, host: Host, port: int) -> Decision:
    if port not in policy.ports:
        allowed = ", ".join(str(p) for p in sorted(policy.ports))
        return block("port-not-allowed", "destinations.ports", f"port {port} is not allowed (allowed: {allowed})")
    if host.is_ip:
        return _decide_literal(policy, host)
    for pattern in policy.blocked:
        if matches(host.name, pattern):
            return block("blocklisted-host", f"destinations.blocklist:{pattern}", f"{host.name} is on the blocklist")
    if policy.allowlist is not None and not any(matches(host.name, p) for p in policy.allowlist):
        return block("not-allowlisted", "destinations.allowlist", f"{host.name} is not on the allowlist")
    return allow("destination-allowed", "destinations")


def _decide_literal(policy: DestinationPolicy, host: Host) -> Decision:
    if not policy.ip_literals:
        return block("ip-literal", "destinations.unsafe_allow_ip_literals", "IP addresses as destinations are denied; use a host name")
    if not host.canonical:
        return block("ip-literal-notation", "destinations", f"non-canonical IP notation is denied (means {host.name})")
    if policy.allowlist is not None:
        return block("not-allowlisted", "destinations.allowlist", f"{host.name} is not on the allowlist")
    return allow("ip-literal-allowed", "destinations.unsafe_allow_ip_literals")


def decide_address(policy: DestinationPolicy, ip: IPAddress) -> tuple[AddressCheck, Decision]:
    result = check(ip, policy.private)
    if result.category == "public":
        return result, allow("public-address", "destinations")
    if result.category == "metadata":
        return result, block("metadata-address", "destinations", f"{result.address} is a cloud metadata or link-local address")
    if result.allowed_by is not None:
        rule = f"destinations.unsafe_allow_private_networks:{result.allowed_by}"
        return result, allow("unsafe-private-network", rule, f"{result.address} ({result.category}) allowed by an unsafe setting")
    return result, block(f"{result.category}-address", "destinations", f"{result.address} is a {result.category} address")


def decide_addresses(policy: DestinationPolicy, ips: Sequence[IPAddress]) -> tuple[IPAddress | None, Decision]:
    """Every address a name resolves to must pass; the proxy then connects to the chosen one.

    IPv4 is preferred: cages have no IPv6 egress by default.
    """
    if not ips:
        return None, block("resolve-failed", "destinations", "the host name has no address")
    checked = []
    for ip in ips:
        result, decision = decide_address(policy, ip)
        if not decision.allowed:
            return None, decision
        checked.append((result, decision))
    result, decision = min(checked, key=lambda pair: pair[0].address.version)
    return result.address, decision


def decide_raw_tunnel(policy: DestinationPolicy) -> Decision:
    if policy.raw_tunnels:
        return allow("unsafe-raw-tunnel", "destinations.unsafe_allow_raw_tunnels", "a non-HTTP tunnel allowed by an unsafe setting")
    return block("raw-tunnel", "destinations.unsafe_allow_raw_tunnels", "non-HTTP traffic through CONNECT is denied")


def split_authority(authority: str, default_port: int) -> tuple[str, int] | None:
    """'host', 'host:port', '[v6]' or '[v6]:port' -> (host, port); None when malformed."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)


def _same(a: str, b: str) -> bool:
    try:
        return parse_host(a).name == parse_host(b).name
    except HostError:
        return False


def agreement(
    *,
    target: tuple[str, int],
    sni: str | None,
    authorities: Sequence[str],
    default_port: int,
) -> Decision | None:
    """None when the SNI and every authority (Host header, :authority, URL) name ``target``."""
    host, port = target
    if sni and not _same(sni, host):
        return block("host-mismatch", "destinations.agreement", "the TLS server name differs from the requested host")
    for authority in filter(None, authorities):
        parsed = split_authority(authority, default_port)
        if parsed is None or parsed[1] != port or not _same(parsed[0], host):
            return block("host-mismatch", "destinations.agreement", "the Host header, :authority and target name different hosts")
    return None
