"""Flows checked from inside the agent pod on a live kind cluster with Calico.

Every "blocked" row has an "allowed" control to the same destination and
port from a pod whose policy allows it (or from an unrestricted pod), so a
broken destination cannot pass as a block. The whole red-team catalog runs on
kind in tests/redteam/test_redteam_kind.py (a cluster of its own).
"""

from __future__ import annotations

import json

import pytest

from tests.kind.conftest import CLEAN_HOST, METADATA_IP, PASTE_HOST, SINK_IP, SINK_NS

pytestmark = [pytest.mark.kind, pytest.mark.slow]

PROXY_SELECTOR = "yolo-cage.role=proxy"


def test_agent_reaches_the_proxy_with_the_cage_ca(live_cage):
    result = live_cage.backend.exec("alice", ["/usr/local/bin/yolo-cage-healthcheck"], timeout=30)
    assert result.returncode == 0, result.text


def _through_proxy(live_cage, url: str) -> str:
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", url]
    return live_cage.backend.exec("alice", argv, timeout=60).stdout.decode().strip()


def test_a_clean_request_through_the_proxy_reaches_the_sink(live_cage):
    marker = f"clean-{live_cage.run_id}"
    assert _through_proxy(live_cage, f"http://{CLEAN_HOST}/{marker}") == "200"
    assert any(marker in json.dumps(e) for e in live_cage.sink_events())


def test_a_paste_site_is_refused_by_the_proxy(live_cage):
    # Control: the same sink, through the same proxy, under a clean name.
    assert _through_proxy(live_cage, f"http://{CLEAN_HOST}/control-{live_cage.run_id}") == "200"
    marker = f"paste-{live_cage.run_id}"
    assert _through_proxy(live_cage, f"http://{PASTE_HOST}/{marker}") == "403"
    assert not any(marker in json.dumps(e) for e in live_cage.sink_events())


def test_agent_cannot_reach_the_sink_directly(live_cage):
    sink_pod = live_cage.pod_ip(SINK_NS, "app=sink")
    marker = f"direct-{live_cage.run_id}"
    for address in (sink_pod, SINK_IP):
        # Control: the proxy (allowed by the test policy) reaches the same pod and port.
        assert live_cage.probe_from(live_cage.backend.project, PROXY_SELECTOR, "proxy", "tcp", sink_pod, 80)
        assert not live_cage.probe_from_agent("alice", "tcp", address, 80)
        live_cage.backend.exec("alice", ["curl", "--noproxy", "*", "--max-time", "5", f"http://{address}/{marker}"], timeout=30)
    assert not any(marker in json.dumps(e) for e in live_cage.sink_events())


def test_agent_cannot_reach_the_scanner(live_cage):
    scanner = live_cage.pod_ip(live_cage.backend.project, "yolo-cage.role=scanner")
    assert live_cage.probe_from(live_cage.backend.project, PROXY_SELECTOR, "proxy", "tcp", scanner, 8000)
    assert not live_cage.probe_from_agent("alice", "tcp", scanner, 8000)


@pytest.mark.parametrize("mode,port", [("dns", 53), ("tcp", 53)])
def test_agent_cannot_reach_kube_dns(live_cage, mode, port):
    assert live_cage.probe_from(live_cage.backend.project, PROXY_SELECTOR, "proxy", mode, "10.96.0.10", port)
    assert not live_cage.probe_from_agent("alice", mode, "10.96.0.10", port)


def test_agent_has_no_resolver_at_all(live_cage):
    assert live_cage.probe_from(SINK_NS, "app=probe", "probe", "tcp", "10.96.0.10", 53)
    result = live_cage.backend.exec("alice", ["getent", "hosts", "kubernetes.default.svc.cluster.local"], timeout=30)
    assert result.returncode != 0


def test_agent_cannot_reach_the_api_server(live_cage):
    assert live_cage.probe_from(SINK_NS, "app=probe", "probe", "tcp", "10.96.0.1", 443)
    assert not live_cage.probe_from_agent("alice", "tcp", "10.96.0.1", 443)


def test_agent_cannot_reach_metadata(live_cage):
    assert live_cage.probe_from(SINK_NS, "app=probe", "probe", "tcp", METADATA_IP, 80)
    assert not live_cage.probe_from_agent("alice", "tcp", METADATA_IP, 80)
    assert not live_cage.probe_from(live_cage.backend.project, PROXY_SELECTOR, "proxy", "tcp", METADATA_IP, 80)


def test_agent_cannot_reach_another_agent(live_cage):
    bob = live_cage.pod_ip(live_cage.backend.project, "yolo-cage.agent=bob")
    live_cage.backend.exec("bob", ["sh", "-c", "nohup python3 -m http.server 9999 >/dev/null 2>&1 &"], timeout=30)
    assert live_cage.probe_from_agent("bob", "tcp", bob, 9999)  # control: bob's listener is up
    assert not live_cage.probe_from_agent("alice", "tcp", bob, 9999)
