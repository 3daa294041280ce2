"""Host canonicalisation: every spelling of a blocked name and every IPv4 notation."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from addon.hostnames import HostError, matches, parse_host, parse_inet_aton


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("pastebin.com", "pastebin.com"),
        ("PasteBin.COM", "pastebin.com"),
        ("pastebin.com.", "pastebin.com"),
        ("ｐａｓｔｅｂｉｎ.com", "pastebin.com"),  # full-width letters, NFKC-mapped by IDNA
        ("pastebin。com", "pastebin.com"),  # ideographic full stop is a label separator
        ("bücher.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("a_b.example", "a_b.example"),
        ("localhost", "localhost"),
    ],
)
def test_names_are_canonicalised(raw: str, canonical: str) -> None:
    host = parse_host(raw)
    assert host.name == canonical and not host.is_ip


@pytest.mark.parametrize(
    "raw",
    ["", "a..b", "pastebin.com..", "-a.example", "a-.example", "a b.example", "x" * 64 + ".example", "xn--zz!.example",
     "4294967296", "1.2.3.256", "1.2.3.4.5", "xn--a.example", "a/b.example"],
)
def test_unusable_hosts_are_errors(raw: str) -> None:
    with pytest.raises(HostError):
        parse_host(raw)


INET_ATON_FORMS = [
    "127.0.0.1", "127.1", "127.0.1", "0x7f.1", "0x7F.0.0.0x1", "2130706433", "017700000001",
    "0177.0.0.01", "0x7f000001", "10.1", "192.168.0x1.1", "169.254.43518", "0", "255.255.255.255",
    "1.2.65535", "0xA9FEA9FE",
]


@pytest.mark.parametrize("raw", INET_ATON_FORMS)
def test_every_inet_aton_notation_is_an_ip_literal_like_the_c_library(raw: str) -> None:
    expected = ipaddress.IPv4Address(socket.inet_aton(raw))
    host = parse_host(raw)
    assert host.ip == expected
    assert host.name == str(expected)
    assert host.canonical == (raw == str(expected))


@pytest.mark.parametrize("raw", ["08", "0x", "1.2.3.0x", "1..2", "a.1"])
def test_non_numbers_are_not_ip_literals(raw: str) -> None:
    assert parse_inet_aton(raw) is None


@pytest.mark.parametrize(
    ("raw", "canonical", "is_canonical"),
    [
        ("::1", "::1", True),
        ("[::1]", "::1", True),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1", True),
        ("::ffff:7f00:1", "::ffff:127.0.0.1", False),
        ("0:0:0:0:0:0:0:1", "::1", False),
        ("fe80::1%eth0", "fe80::1", False),
        ("FD00:EC2::254", "fd00:ec2::254", True),
    ],
)
def test_ipv6_literals(raw: str, canonical: str, is_canonical: bool) -> None:
    host = parse_host(raw)
    assert host.is_ip and host.ip is not None and host.ip.version == 6
    assert host.name == canonical
    assert host.canonical is is_canonical


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("pastebin.com", "pastebin.com", True),
        ("www.pastebin.com", "pastebin.com", True),
        ("a.b.pastebin.com", "pastebin.com", True),
        ("notpastebin.com", "pastebin.com", False),
        ("pastebin.com.evil", "pastebin.com", False),
    ],
)
def test_patterns_match_the_name_and_its_subdomains(name: str, pattern: str, expected: bool) -> None:
    assert matches(name, pattern) is expected
