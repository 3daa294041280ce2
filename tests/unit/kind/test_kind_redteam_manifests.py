"""The red team's kind manifests (TEST ONLY): rendered, checked in, strictly valid, hardened,
and different from the product's cage only where the red team needs it."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from kit import kindcluster, kindrender, podsecurity
from kit.ipsets import Addresses
from kit.netpol import workload_pods
from kit.redteam import kind_render
from tests.unit.kind.test_kind_manifests import VERSIONS, validate

SINK_CODE = Path(__file__).resolve().parents[3] / "images/sink/files/opt/yolo-cage"


def _kubectl_or_skip() -> None:
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed on this CI machine: the red-team overlay cannot be rendered")
        pytest.skip("kubectl is not installed: cannot re-render the red-team overlay here")


def _by(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _pods(docs) -> dict[str, dict]:
    return {pod.name: spec for spec, pod in workload_pods(docs, Addresses())}


def test_the_checked_in_scenario_is_what_the_kit_renders():
    _kubectl_or_skip()
    for fname, text in kind_render.scenario_files().items():
        on_disk = (kind_render.SCENARIO_DIR / fname).read_text()
        assert kindrender.load_all(on_disk) == kindrender.load_all(text), (
            f"kind/scenarios/redteam/{fname} is stale: run `uv run python -m kit.redteam.kind_render`")


def _all_objects() -> list[dict]:
    docs = kind_render.rendered_cage() + kind_render.rendered_attacker()
    docs.append(kind_render.upstream_ca_configmap(kind_render.SCENARIO_PROJECT, b"-----BEGIN CERTIFICATE-----\n"))
    return docs


@pytest.mark.parametrize("version", VERSIONS)
def test_the_red_team_manifests_validate_strictly(version):
    kinds = set()
    for doc in _all_objects():
        validate(doc, version)  # strict: an unknown field or a wrong type fails (tests/unit/kind/test_kind_manifests.py)
        kinds.add(doc["kind"])
    assert {"Namespace", "Deployment", "DaemonSet", "Service", "NetworkPolicy", "ConfigMap"} <= kinds


def test_outside_the_red_teams_changes_the_cage_is_the_products():
    """Agents, the scanner's workload, namespace and accounts are byte-identical to the product's rendering."""
    _kubectl_or_skip()
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    product = {key(d): d for d in kind_render.product_cage()}
    redteam = {key(d): d for d in kind_render.rendered_cage()}
    removed = {("NetworkPolicy", "proxy-egress-to-internet"), ("NetworkPolicy", "proxy-egress-to-dns")}
    added = {("NetworkPolicy", "redteam-proxy-egress-to-sink")}
    changed = {("Deployment", "proxy"), ("Service", "scanner")}
    assert set(product) - set(redteam) == removed
    assert set(redteam) - set(product) == added
    assert {k for k in product.keys() & redteam.keys() if product[k] != redteam[k]} == changed


def test_the_proxy_changes_are_only_its_resolver_the_scanners_name_and_the_sinks_ca():
    _kubectl_or_skip()
    before = _by(kind_render.product_cage(), "Deployment", "proxy")["spec"]["template"]["spec"]
    after = _by(kind_render.rendered_cage(), "Deployment", "proxy")["spec"]["template"]["spec"]
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == {
        "dnsPolicy", "dnsConfig", "hostAliases", "volumes"}
    assert after["dnsPolicy"] == "None" and after["dnsConfig"]["nameservers"] == [kind_render.SINK_SERVICE_IP]
    assert after["hostAliases"] == [{"ip": kind_render.SCANNER_SERVICE_IP, "hostnames": ["scanner"]}]
    sources = after["volumes"][0]["projected"]["sources"]
    assert sources[:-1] == before["volumes"][0]["projected"]["sources"]
    assert sources[-1] == {"configMap": {"name": kind_render.UPSTREAM_CA_CONFIGMAP, "items": [
        {"key": kind_render.UPSTREAM_CA_KEY, "path": "upstream-ca/sink.pem"}]}}
    mount = after["containers"][0]["volumeMounts"][0]
    assert mount == {"name": after["volumes"][0]["name"], "mountPath": "/etc/yolo-cage", "readOnly": True}


def test_the_fixed_addresses_agree_and_sit_in_the_static_band():
    cage, attacker = kind_render.rendered_cage(), kind_render.rendered_attacker()
    sink_service = _by(attacker, "Service", "sink")["spec"]["clusterIP"]
    scanner_service = _by(cage, "Service", "scanner")["spec"]["clusterIP"]
    proxy_service = _by(cage, "Service", "proxy")["spec"]["clusterIP"]
    assert (sink_service, scanner_service) == (kind_render.SINK_SERVICE_IP, kind_render.SCANNER_SERVICE_IP)
    assert len({sink_service, scanner_service, proxy_service}) == 3
    config = kindcluster.cluster_config("kindest/node:v1@sha256:" + "0" * 64)
    for address in (sink_service, scanner_service):
        assert kindcluster.proxy_address_problems(config, address) == []
    sink_env = {e["name"]: e["value"] for e in _pods(attacker)["sink"]["containers"][0]["env"]}
    assert sink_env["SINK_DNS_ANSWER"] == sink_service  # every name the proxy resolves leads to the sink


def test_the_red_team_policy_names_the_attackers_namespace():
    policy = _by(kind_render.rendered_cage(), "NetworkPolicy", "redteam-proxy-egress-to-sink")
    [peer] = policy["spec"]["egress"][0]["to"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": kind_render.ATTACKER_NS}}
    namespaces = [d for d in kind_render.rendered_attacker() if d["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == [kind_render.ATTACKER_NS]
    assert all(d["metadata"].get("namespace") == kind_render.ATTACKER_NS
               for d in kind_render.rendered_attacker() if d["kind"] != "Namespace")


def _sink_defaults():
    if str(SINK_CODE) not in sys.path:
        sys.path.insert(0, str(SINK_CODE))
    from sink import __main__ as sink_main  # the sink image's own code

    return sink_main


def test_the_sink_service_carries_every_listener_of_the_sink(monkeypatch):
    for name in ("SINK_HTTP_PORTS", "SINK_HTTPS_PORTS", "SINK_TCP_PORTS", "SINK_UDP_PORTS", "SINK_DNS_PORTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SINK_DNS_ANSWER", "10.96.0.90")
    config = _sink_defaults().config()
    tcp = set(config.http_ports + config.https_ports + config.tcp_ports)
    udp = set(config.udp_ports + config.dns_ports)
    ports = _by(kind_render.rendered_attacker(), "Service", "sink")["spec"]["ports"]
    assert {p["port"] for p in ports if p["protocol"] == "TCP"} == tcp
    assert {p["port"] for p in ports if p["protocol"] == "UDP"} == udp


def test_the_node_standin_listens_on_the_red_teams_port_and_port_80_only():
    spec = _pods(kind_render.rendered_attacker())["node-standin"]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert spec["hostNetwork"] is True
    assert (env["SINK_HTTP_PORTS"], env["SINK_TCP_PORTS"]) == ("80", str(kind_render.NODE_LISTENER_PORT))
    assert env["SINK_HTTPS_PORTS"] == env["SINK_UDP_PORTS"] == env["SINK_DNS_PORTS"] == "" and env["SINK_ICMP"] == "0"


def test_cage_pods_stay_restricted_under_the_red_team_component():
    for name, spec in _pods(kind_render.rendered_cage()).items():
        assert podsecurity.restricted_problems(spec) == [], name
        assert podsecurity.cage_problems(spec) == [], name


def test_the_witness_is_restricted_and_the_sink_and_node_standin_deviate_only_where_they_must():
    pods = _pods(kind_render.rendered_attacker())
    assert podsecurity.restricted_problems(pods["witness"]) == []
    sink = podsecurity.restricted_problems(pods["sink"])
    assert all(any(w in p for w in ("runAsNonRoot", "runAsUser", "NET_RAW", "NET_BIND_SERVICE")) for p in sink), sink
    node = podsecurity.restricted_problems(pods["node-standin"])
    assert all(any(w in p for w in ("hostNetwork", "runAsNonRoot", "runAsUser", "NET_BIND_SERVICE")) for p in node), node
    for name in ("sink", "node-standin"):
        c = pods[name]["containers"][0]
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"] and c["securityContext"]["readOnlyRootFilesystem"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert pods[name]["automountServiceAccountToken"] is False and c["imagePullPolicy"] == "Never"


def test_nothing_secret_is_rendered_and_the_sink_ca_is_a_certificate_only():
    text = json.dumps(kind_render.rendered_cage() + kind_render.rendered_attacker())
    assert '"kind": "Secret"' not in text
    cm = kind_render.upstream_ca_configmap("p", b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n")
    assert cm["metadata"]["namespace"] == "p" and list(cm["data"]) == [kind_render.UPSTREAM_CA_KEY]
    assert cm["metadata"]["labels"]["app.kubernetes.io/part-of"] == "yolo-cage"  # `down --kind` removes it


def test_the_metadata_standin_addresses_are_the_ipv4_metadata_addresses():
    from kit.redteam import kind_world

    assert all(ipaddress.ip_address(a).version == 4 for a in kind_world.METADATA_ADDRESSES)
    assert "169.254.169.254" in kind_world.METADATA_ADDRESSES
