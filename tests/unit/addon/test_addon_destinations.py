"""Destination decisions as tables (smokescreen's acl_test shape): each row both verdicts."""

from __future__ import annotations

import ipaddress

import pytest

from addon.addresses import check, effective
from addon.decision import Verdict
from addon.destinations import (
    DestinationPolicy,
    agreement,
    decide_address,
    decide_addresses,
    decide_name,
    decide_raw_tunnel,
    split_authority,
)
from addon.policy import SEED_BLOCKLIST, Destinations

ip = ipaddress.ip_address


def policy(**kw: object) -> DestinationPolicy:
    return DestinationPolicy.from_policy(Destinations.model_validate(kw))


# --- names -------------------------------------------------------------------------

NAME_TABLE = [
    # (id, policy kwargs, host, port, verdict, reason)
    ("plain-allowed", {}, "example.com", 443, "allow", "destination-allowed"),
    ("seed-blocked", {}, "pastebin.com", 443, "block", "blocklisted-host"),
    ("seed-subdomain", {}, "raw.PasteBin.com.", 443, "block", "blocklisted-host"),
    ("seed-fullwidth", {}, "ｐａｓｔｅｂｉｎ.com", 443, "block", "blocklisted-host"),
    ("seed-lookalike-allowed", {}, "pastebin.com.example", 443, "allow", "destination-allowed"),
    ("extra-blocklist", {"blocklist": ["evil.example"]}, "x.evil.example", 80, "block", "blocklisted-host"),
    ("port-denied", {}, "example.com", 22, "block", "port-not-allowed"),
    ("port-listed", {"ports": [8443]}, "example.com", 8443, "allow", "destination-allowed"),
    ("allowlist-miss", {"mode": "allowlist", "allowlist": ["api.example"]}, "example.com", 443, "block", "not-allowlisted"),
    ("allowlist-hit", {"mode": "allowlist", "allowlist": ["api.example"]}, "v1.api.example", 443, "allow", "destination-allowed"),
    ("allowlist-blocklist-wins", {"mode": "allowlist", "allowlist": ["pastebin.com"]}, "pastebin.com", 443, "block", "blocklisted-host"),
    ("ip-literal", {}, "93.184.216.34", 443, "block", "ip-literal"),
    ("ip-literal-short", {}, "127.1", 80, "block", "ip-literal"),
    ("ip-literal-decimal", {}, "2130706433", 80, "block", "ip-literal"),
    ("ip-literal-v6", {}, "[::ffff:169.254.169.254]", 80, "block", "ip-literal"),
    ("ip-literal-allowed", {"unsafe_allow_ip_literals": True}, "93.184.216.34", 443, "allow", "ip-literal-allowed"),
    ("ip-literal-odd-notation", {"unsafe_allow_ip_literals": True}, "0x5d.0xb8.0xd8.0x22", 443, "block", "ip-literal-notation"),
    ("invalid", {}, "bad..host", 443, "block", "invalid-host"),
]


@pytest.mark.parametrize(("row", "kw", "host", "port", "verdict", "reason"), NAME_TABLE, ids=[r[0] for r in NAME_TABLE])
def test_decide_name(row: str, kw: dict, host: str, port: int, verdict: str, reason: str) -> None:
    _, decision = decide_name(policy(**kw), host, port)
    assert (decision.verdict.value, decision.reason) == (verdict, reason)


@pytest.mark.parametrize("site", SEED_BLOCKLIST)
def test_every_seed_site_is_blocked_with_subdomains_and_its_neighbour_is_not(site: str) -> None:
    p = policy()
    assert decide_name(p, f"www.{site.upper()}.", 443)[1].reason == "blocklisted-host"
    assert decide_name(p, f"not{site}", 443)[1].allowed


# --- addresses ---------------------------------------------------------------------

ADDRESS_TABLE = [
    ("93.184.216.34", "public"),
    ("2606:2800:220:1:248:1893:25c8:1946", "public"),
    ("127.0.0.1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "cgnat"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("168.63.129.16", "metadata"),
    ("192.0.0.192", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("fe80::1", "metadata"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("255.255.255.255", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "private"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved"),  # Teredo
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "metadata"),
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("::ffff:93.184.216.34", "public"),
]


@pytest.mark.parametrize(("address", "category"), ADDRESS_TABLE)
def test_address_categories(address: str, category: str) -> None:
    assert check(ip(address)).category == category


def test_embedded_ipv4_is_judged_by_what_it_reaches() -> None:
    assert effective(ip("::ffff:10.0.0.1")) == ip("10.0.0.1")
    assert effective(ip("2606:2800::1")) == ip("2606:2800::1")


@pytest.mark.parametrize(("address", "verdict", "reason"), [
    ("93.184.216.34", "allow", "public-address"),
    ("127.0.0.1", "block", "loopback-address"),
    ("10.0.0.5", "block", "private-address"),
    ("169.254.169.254", "block", "metadata-address"),
])
def test_decide_address_without_private_allowance(address: str, verdict: str, reason: str) -> None:
    _, decision = decide_address(policy(), ip(address))
    assert (decision.verdict.value, decision.reason) == (verdict, reason)


def test_private_allowance_opens_only_its_networks_and_never_metadata() -> None:
    p = policy(unsafe_allow_private_networks=["127.0.0.0/8", "169.254.0.0/16", "::/0"])
    assert decide_address(p, ip("127.0.0.1"))[1].reason == "unsafe-private-network"
    assert decide_address(p, ip("::ffff:127.0.0.2"))[1].reason == "unsafe-private-network"
    assert decide_address(p, ip("10.0.0.1"))[1].reason == "private-address"
    for metadata in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16"):
        assert decide_address(p, ip(metadata))[1].reason == "metadata-address"


def test_every_resolved_address_must_pass_and_ipv4_is_preferred() -> None:
    p = policy(unsafe_allow_private_networks=["127.0.0.0/8"])
    chosen, decision = decide_addresses(p, [ip("::1"), ip("127.0.0.1")])
    assert chosen is None and decision.reason == "loopback-address"  # ::1 is not allowed
    p = policy(unsafe_allow_private_networks=["127.0.0.0/8", "::1/128"])
    chosen, decision = decide_addresses(p, [ip("::1"), ip("127.0.0.1")])
    assert chosen == ip("127.0.0.1") and decision.allowed
    chosen, decision = decide_addresses(policy(), [ip("93.184.216.34"), ip("10.0.0.1")])
    assert chosen is None and decision.reason == "private-address"  # one bad answer spoils the name
    assert decide_addresses(policy(), [])[1].reason == "resolve-failed"


def test_raw_tunnels_are_denied_unless_unsafe() -> None:
    assert decide_raw_tunnel(policy()).verdict is Verdict.BLOCK
    assert decide_raw_tunnel(policy(unsafe_allow_raw_tunnels=True)).allowed


# --- agreement ----------------------------------------------------------------------

AGREEMENT_TABLE = [
    ("same", ("example.com", 443), "example.com", ["example.com"], None),
    ("same-with-port", ("example.com", 443), None, ["example.com:443", "EXAMPLE.com."], None),
    ("sni-differs", ("example.com", 443), "evil.example", ["example.com"], "host-mismatch"),
    ("host-differs", ("example.com", 443), "example.com", ["evil.example"], "host-mismatch"),
    ("port-differs", ("example.com", 443), None, ["example.com:8443"], "host-mismatch"),
    ("two-hosts", ("example.com", 443), None, ["example.com, evil.example"], "host-mismatch"),
    ("garbage", ("example.com", 443), None, ["example.com:x"], "host-mismatch"),
    ("ipv6", ("::1", 80), None, ["[::1]:80"], None),
]


@pytest.mark.parametrize(("row", "target", "sni", "authorities", "reason"), AGREEMENT_TABLE, ids=[r[0] for r in AGREEMENT_TABLE])
def test_agreement(row: str, target: tuple[str, int], sni: str | None, authorities: list[str], reason: str | None) -> None:
    decision = agreement(target=target, sni=sni, authorities=authorities, default_port=target[1])
    assert (decision.reason if decision else None) == reason


@pytest.mark.parametrize(("authority", "expected"), [
    ("a.example", ("a.example", 80)),
    ("a.example:8080", ("a.example", 8080)),
    ("[::1]:81", ("[::1]", 81)),
    ("[::1]", ("[::1]", 80)),
    ("a.example:0", None),
    ("[::1", None),
    ("[::1]x", None),
])
def test_split_authority(authority: str, expected: tuple[str, int] | None) -> None:
    assert split_authority(authority, 80) == expected
