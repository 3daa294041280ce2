"""The catalog is a well-formed table that covers everything the red team must try."""

from __future__ import annotations

import json
import re

import pytest

from kit.redteam import canaries, catalog
from kit.redteam.catalog import CATALOG, CHANNELS, EVIDENCE, FAULTS
from kit.redteam.inside import main as inside
from kit.redteam.inside import outcomes as o
from kit.redteam.targets import Targets, placeholders

TARGETS = Targets(agent="a", proxy_host="proxy", proxy_ip="10.0.0.2", proxy_port=8080, sink_ip="10.9.0.5",
                  sink_name="sink", scanner_ip="10.1.0.3", other_agent="b", other_agent_ip="10.2.0.3",
                  gateway_ip="10.0.0.1", host_ips=("172.17.0.1", "192.0.2.2"), host_port=4321, offhost_ok=True)
OUTCOMES = {v for k, v in vars(o).items() if k.isupper() and isinstance(v, str)}

# What the issue asks the catalog to try, each by a pattern over row ids.
REQUIRED = {
    "direct TCP to the sink by IP": r"^net-tcp-sink-ip",
    "direct TCP by name": r"^net-tcp-sink-name$",
    "UDP": r"^net-udp-sink-(ip|name)$",
    "ICMP": r"^net-icmp-sink-(ip|name)$",
    "ignoring the proxy": r"^net-proxy-ignored$",
    "unsetting the proxy variables": r"^net-proxy-unset$",
    "NO_PROXY tricks": r"^net-no-proxy-",
    "IPv6": r"^net-ipv6-",
    "DNS A query": r"^dns-a-",
    "DNS TXT query": r"^dns-txt-",
    "DNS over HTTPS through the proxy": r"^dns-doh-",
    "the Docker host gateway": r"^net-host-gateway$",
    "host ports": r"^net-host-ports$",
    "cloud metadata": r"^(net|dest)-metadata",
    "the scanner": r"^(net|dest)-scanner",
    "proxy admin port": r"^net-proxy-other-ports$",
    "another agent": r"-other-agent",
    "SSH to the sink": r"^net-ssh-",
    "body": r"^content-body-",
    "query": r"^content-query$",
    "path": r"^content-path$",
    "headers": r"^content-header-",
    "cookies": r"^content-cookie$",
    "multipart": r"^content-multipart$",
    "gzip body": r"^content-gzip$",
    "br body": r"^content-br$",
    "WebSocket": r"^content-websocket",
    "HTTP/2": r"^content-http2$",
    "base64": r"^enc-base64$",
    "hex": r"^enc-hex$",
    "url": r"^enc-url$",
    "double-url": r"^enc-double-url$",
    "JSON-escaped": r"^enc-json-",
    "reversed": r"^enc-reversed$",
    "split across fields": r"^enc-split-(fields|headers)$",
    "split across requests": r"^enc-split-requests",
    "blocklisted subdomains": r"^dest-subdomain$",
    "case": r"^dest-case$",
    "trailing dot": r"^dest-trailing-dot$",
    "IP literal forms": r"^dest-ip-forms$",
    "Host/SNI mismatch": r"^dest-(sni|host)-mismatch",
    "CONNECT to odd ports": r"^dest-connect-odd-ports$",
    "git push to an attacker repository": r"^git-push-attacker$",
    "scanner stopped": r"^fault-scanner-stopped$",
    "scanner slow": r"^fault-scanner-slow$",
}


def test_at_least_sixty_unique_rows():
    ids = [t.id for t in CATALOG]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", i) for i in ids)


@pytest.mark.parametrize(("what", "pattern"), sorted(REQUIRED.items()))
def test_the_issue_list_is_covered(what, pattern):
    assert any(re.search(pattern, t.id) for t in CATALOG), what


@pytest.mark.parametrize("t", CATALOG, ids=lambda t: t.id)
def test_row_is_complete(t):
    assert t.channel in CHANNELS and t.evidence in EVIDENCE and t.expected == "blocked"
    assert t.technique and t.why and t.attack and t.control
    assert t.accept and t.accept <= OUTCOMES and o.DELIVERED not in t.accept and o.ERROR not in t.accept
    assert t.fault is None or t.fault in FAULTS
    assert t.control_at in ("sink", "agent")
    for probe in t.attack + t.control:
        assert probe["op"] in inside.OPS, probe


@pytest.mark.parametrize("t", CATALOG, ids=lambda t: t.id)
def test_controls_never_carry_a_secret(t):
    assert not re.search(r"\{\{(c:|f:|envdump)", json.dumps(t.control)), t.id


@pytest.mark.parametrize("t", [t for t in CATALOG if t.channel in ("content", "encoding")], ids=lambda t: t.id)
def test_content_attacks_carry_a_canary_and_their_control_is_the_same_request(t):
    assert t.carries_canary
    assert [p["op"] for p in t.attack] == [p["op"] for p in t.control]
    for attack, control in zip(t.attack, t.control, strict=True):
        assert attack.get("url", "").split("/rt/")[0] == control.get("url", "").split("/rt/")[0] or "@" in attack["url"]


@pytest.mark.parametrize("t", CATALOG, ids=lambda t: t.id)
def test_every_probe_is_attributable(t):
    """The sink's capture is matched to probes by marker: every attack must carry {{m}} where the sink sees it."""
    for probe in t.attack:
        if probe["op"] in ("route", "icmp", "ssh", "resolve"):
            continue  # judged on the agent side, or ICMP's payload carries it by default
        assert "{{m}}" in json.dumps(probe), (t.id, probe)


def test_canary_names_exist():
    names = {c.name for c in canaries.generate().canaries}
    used = set(re.findall(r"\{\{c:([^|}]+)", json.dumps([t.attack for t in CATALOG])))
    assert used and used <= names
    files = set(re.findall(r"\{\{f:([^|}]+)", json.dumps([t.attack for t in CATALOG])))
    assert files <= set(canaries.generate().files)


def test_every_canary_is_used_somewhere():
    text = json.dumps([t.attack for t in CATALOG])
    for canary in canaries.generate().canaries:
        in_file = canary.source.file and f"{{{{f:{canary.source.file}" in text
        assert f"{{{{c:{canary.name}" in text or in_file, canary.name


def test_every_placeholder_is_a_target():
    known = set(TARGETS.values())
    for t in CATALOG:
        assert t.needs <= known, (t.id, t.needs - known)


def test_direct_probes_are_recognised():
    assert catalog.is_direct({"op": "tcp"})
    assert catalog.is_direct({"op": "http", "via": "direct"})
    assert catalog.is_direct({"op": "curl", "args": ["--noproxy", "*"]})
    assert catalog.is_direct({"op": "curl", "env": {"NO_PROXY": "*"}})
    assert not catalog.is_direct({"op": "http"})
    assert not catalog.is_direct({"op": "curl", "args": []})


def test_select_by_prefix_and_channel():
    assert {t.id for t in catalog.select(["net-tcp-sink-ip"])} == {"net-tcp-sink-ip-80", "net-tcp-sink-ip-443", "net-tcp-sink-ip-high"}
    assert {t.channel for t in catalog.select(channels=["dns"])} == {"dns"}
    assert catalog.by_id("content-br").channel == "content"
    with pytest.raises(KeyError):
        catalog.by_id("nope")


def test_placeholders_are_found_everywhere():
    assert placeholders({"a": ["${x}", {"b": "${y}z"}], "c": 3}) == {"x", "y"}
