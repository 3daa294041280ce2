"""Which IP addresses the proxy may connect to.

Explicit tables rather than ``ipaddress.is_global``: its meaning has changed
between Python versions, and a reviewer should see every range that is denied.
Addresses that carry an IPv4 address inside IPv6 (mapped, compatible, NAT64,
6to4) are judged by the IPv4 address they reach.

Pure: imports nothing from mitmproxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_N = ipaddress.ip_network

# Cloud and platform metadata / control endpoints: never reachable, whatever
# the policy allows (unsafe_allow_private_networks included).
METADATA: tuple[IPNetwork, ...] = (
    _N("169.254.0.0/16"),  # link-local: AWS/GCP/Azure/OpenStack/DO 169.254.169.254, ECS 169.254.170.2
    _N("100.100.100.200/32"),  # Alibaba Cloud
    _N("168.63.129.16/32"),  # Azure WireServer / platform DNS
    _N("192.0.0.192/32"),  # Oracle Cloud (OCI) legacy metadata
    _N("fd00:ec2::/32"),  # AWS IMDS and DNS over IPv6 (fd00:ec2::254, fd00:ec2::23)
    _N("fe80::/10"),  # IPv6 link-local
)

# Not the public internet. Order matters only for the category reported.
SPECIAL: tuple[tuple[str, IPNetwork], ...] = (
    ("unspecified", _N("0.0.0.0/8")),
    ("loopback", _N("127.0.0.0/8")),
    ("private", _N("10.0.0.0/8")),
    ("private", _N("172.16.0.0/12")),
    ("private", _N("192.168.0.0/16")),
    ("cgnat", _N("100.64.0.0/10")),
    ("reserved", _N("192.0.0.0/24")),  # IETF protocol assignments
    ("documentation", _N("192.0.2.0/24")),
    ("reserved", _N("192.88.99.0/24")),  # 6to4 relay anycast
    ("benchmarking", _N("198.18.0.0/15")),
    ("documentation", _N("198.51.100.0/24")),
    ("documentation", _N("203.0.113.0/24")),
    ("multicast", _N("224.0.0.0/4")),
    ("reserved", _N("240.0.0.0/4")),  # includes 255.255.255.255
    ("unspecified", _N("::/128")),
    ("loopback", _N("::1/128")),
    ("reserved", _N("100::/64")),  # discard-only
    ("reserved", _N("64:ff9b:1::/48")),  # local-use NAT64
    ("reserved", _N("2001::/23")),  # IETF protocol assignments, Teredo included
    ("documentation", _N("2001:db8::/32")),
    ("documentation", _N("3fff::/20")),
    ("reserved", _N("5f00::/16")),  # SRv6 SIDs
    ("private", _N("fc00::/7")),  # unique local
    ("reserved", _N("fec0::/10")),  # deprecated site-local
    ("multicast", _N("ff00::/8")),
)

_NAT64 = _N("64:ff9b::/96")
_V4_COMPATIBLE = _N("::/96")
_6TO4 = _N("2002::/16")


@dataclass(frozen=True, slots=True)
class AddressCheck:
    address: IPAddress  # the address actually reached (embedded IPv4 unwrapped)
    category: str  # "public", "metadata", or a SPECIAL category
    allowed_by: IPNetwork | None = None  # the unsafe_allow_private_networks entry used

    @property
    def allowed(self) -> bool:
        return self.category == "public" or self.allowed_by is not None


def effective(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries and reaches, else ``ip`` itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return ip


def category(ip: IPAddress) -> str:
    if any(ip in net for net in METADATA if net.version == ip.version):
        return "metadata"
    for name, net in SPECIAL:
        if net.version == ip.version and ip in net:
            return name
    return "public"


def check(ip: IPAddress, allowed_private: Iterable[IPNetwork] = ()) -> AddressCheck:
    """Classify the address ``ip`` reaches; private ranges pass only when listed.

    Metadata and link-local addresses never pass.
    """
    target = effective(ip)
    cat = category(target)
    if cat in ("public", "metadata"):
        return AddressCheck(target, cat)
    for net in allowed_private:
        if net.version == target.version and target in net:
            return AddressCheck(target, cat, net)
    return AddressCheck(target, cat)
