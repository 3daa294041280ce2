"""The red team's kind world against a fake kubectl/kind/docker: targets, captures, host evidence,
faults, the witness. The cage's NetworkPolicies are the rendered ones, evaluated for real."""

from __future__ import annotations

import base64
import json

import pytest

from kit import settings
from kit.errors import BackendError, CageError
from kit.redteam import catalog, kind_cage, kind_render, kind_world, runner
from kit.redteam.hostlistener import Connection
from tests.unit.kit.redteam.kindfake import NODE, NODE_IP, PROJECT, FakeKube

NETPOL = "NetworkPolicy"


def _policies(docs):
    return [d for d in docs if d["kind"] == NETPOL]


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))
    user = settings.from_mapping({"apiVersion": settings.API_VERSION, "kind": settings.KIND}, source="test")
    backend = kind_cage.backend_for(user, build=False)
    assert (backend.project, backend.cluster) == (PROJECT, "yolo-cage-redteam")

    def make(policies=None, **kw):
        fake = FakeKube(policies if policies is not None else _policies(kind_render.rendered_cage()), **kw)
        monkeypatch.setattr(kind_world, "run", fake)
        return kind_world.KindWorld(backend), fake

    return make


def test_targets_come_from_the_cluster(world):
    w, _ = world()
    t = w.targets("dev", 47613)
    assert (t.proxy_host, t.proxy_ip, t.proxy_port) == ("proxy", "192.168.10.7", 8080)  # the proxy pod itself
    assert t.sink_ip == kind_render.SINK_SERVICE_IP and t.sink_name == "sink.yc-attacker.svc.cluster.local"
    assert (t.scanner_ip, t.other_agent, t.other_agent_ip) == ("192.168.10.8", "peer", "192.168.10.6")
    assert t.gateway_ip == NODE_IP  # the agent's node
    assert t.host_ips[0] == "172.18.0.1" and t.host_port == 47613
    assert dict(t.extra) == {"sink_pod_ip": "192.168.20.2", "api_ip": "10.96.0.1", "kube_dns_ip": "10.96.0.10"}
    assert t.local_addresses == frozenset({"169.254.169.254", "100.100.100.200"})
    assert t.values()["sink_pod_ip"] == "192.168.20.2" and t.values()["sink_ip_int"] == str(0x0A60005A)


def test_the_proxy_counts_as_contained_only_under_the_red_team_policies(world):
    w, _ = world()
    assert w.targets("dev", None).offhost_ok is True
    product = _policies(kind_render.rendered_cage())
    product = [p for p in product if p["metadata"]["name"] != "redteam-proxy-egress-to-sink"]
    with_internet = product + [{
        "apiVersion": "networking.k8s.io/v1", "kind": NETPOL,
        "metadata": {"name": "proxy-egress-to-internet", "namespace": PROJECT},
        "spec": {"podSelector": {"matchLabels": {"yolo-cage.role": "proxy"}}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]}}]
    w2, _ = world(with_internet)
    assert w2.targets("dev", None).offhost_ok is False
    w3, _ = world([])  # no policy at all: the proxy is open
    assert w3.targets("dev", None).offhost_ok is False
    w2.allow_offhost = True
    assert w2.targets("dev", None).offhost_ok is True


def test_a_metadata_address_missing_on_one_node_is_not_local(world):
    w, fake = world()
    fake.loopback["yolo-cage-redteam-worker"] = {"127.0.0.1", "169.254.169.254"}
    assert w.local_metadata() == ["169.254.169.254"]


def test_every_kind_row_gets_all_its_targets(world):
    """Planned with the kind world's targets and places: nothing is skipped for a missing target."""
    w, _ = world()
    plans = runner.plan(list(catalog.CATALOG), w.targets("dev", 47613), "abcdef", w.faults(),
                        adapt=w.adapt, places=w.places())
    skipped = {p.technique.id: p.skip for p in plans if p.skip}
    assert skipped == {}, skipped
    notes = {p.technique.id: p.notes for p in plans if p.notes}
    # The one probe not sent: the IPv6 metadata address is no address of an IPv4-only cluster's nodes.
    assert notes == {"net-metadata": ["probe a1 not sent: fd00:ec2::254 is not an address of this machine, "
                                      "and no packet of the red team may leave it"]}


def test_missing_sink_says_how_to_start_the_world(world):
    w, fake = world()
    fake.pods = [p for p in fake.pods if p["metadata"]["labels"]["yolo-cage.role"] != "sink"]
    with pytest.raises(BackendError, match="invoke redteam --kind"):
        w.targets("dev", None)


def _event(**kw) -> bytes:
    return (json.dumps(kw) + "\n").encode()


def test_sink_capture_is_read_from_a_byte_mark_and_a_restart_starts_over(world):
    w, fake = world()
    first = _event(seq=1, kind="sink-started", listener="sink")
    fake.files[("sink-1", kind_render.CAPTURE_FILE)] = first
    mark = w.sink_mark()
    assert mark == len(first)
    second = _event(seq=2, kind="http", listener="tcp/80", target="/rt/x", text="é")
    fake.files[("sink-1", kind_render.CAPTURE_FILE)] = first + second
    assert [json.loads(line)["seq"] for line in w.sink_lines(mark)] == [2]
    fake.files[("sink-1", kind_render.CAPTURE_FILE)] = _event(seq=1, kind="sink-started", listener="sink")[:10]
    assert len(w.sink_lines(mark)) == 1  # shorter than the mark: a new sink, read from its start


def test_allowed_sources_are_the_proxy_and_the_witness(world):
    w, _ = world()
    assert w.allowed_sources() == {"192.168.10.7", "192.168.20.3"}


def test_node_standin_captures_become_host_connections(world):
    w, fake = world()
    path = ("node-standin-1", kind_render.CAPTURE_FILE)
    fake.files[path] = _event(seq=1, kind="sink-started", listener="sink")
    marks = w.node_marks()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    fake.files[path] += (_event(seq=2, kind="connect", listener="tcp/47613", conn=1, src="192.168.10.5:40000")
                         + _event(seq=3, kind="tcp", listener="tcp/47613", conn=1, src="192.168.10.5:40000",
                                  data_b64=b64(b"RT rt-abcdef-018a0 "))
                         + _event(seq=4, kind="tcp", listener="tcp/47613", conn=1, src="192.168.10.5:40000",
                                  data_b64=b64(b"tail"))
                         + _event(seq=5, kind="http", listener="tcp/80", conn=2, src="192.168.10.5:40002",
                                  raw_b64=b64(b"GET /latest/meta-data/?rt=rt-abcdef-021a0 HTTP/1.1\r\n\r\n")))
    got = w.node_connections(marks)
    assert got == [Connection("192.168.10.5", b"RT rt-abcdef-018a0 tail"),
                   Connection("192.168.10.5", b"GET /latest/meta-data/?rt=rt-abcdef-021a0 HTTP/1.1\r\n\r\n")]


def test_the_host_listener_joins_this_machines_listener_and_the_nodes(world, monkeypatch):
    w, fake = world()
    listener = kind_world.KindHostListener(w)
    monkeypatch.setattr(listener, "local", kind_world.HostListener(port=0))
    with listener as host:
        assert host.port == kind_render.NODE_LISTENER_PORT  # the port the node stand-ins listen on
        fake.files[("node-standin-1", kind_render.CAPTURE_FILE)] += _event(
            seq=9, kind="connect", listener="tcp/47613", conn=7, src="192.168.10.5:1")
        assert host.connections == [Connection("192.168.10.5", b"")]


def test_the_host_listener_says_when_its_port_is_taken(world, monkeypatch):
    import socket

    w, _ = world()
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        listener = kind_world.KindHostListener(w)
        monkeypatch.setattr(listener, "local", kind_world.HostListener(port=busy.getsockname()[1]))
        with pytest.raises(CageError, match="cannot"):
            listener.__enter__()


def test_scanner_stopped_scales_to_zero_and_always_back(world):
    w, fake = world()
    with pytest.raises(RuntimeError), w.fault("scanner-stopped"):
        assert fake.lines("--replicas=0") and not fake.lines("--replicas=1")
        raise RuntimeError("the attack itself failed")
    order = [" ".join(c[3:]) for c in fake.commands]
    assert order == [
        f"-n {PROJECT} scale deployment/scanner --replicas=0",
        f"-n {PROJECT} wait --for=delete pod -l yolo-cage.role=scanner --timeout=120s",
        f"-n {PROJECT} scale deployment/scanner --replicas=1",
        f"-n {PROJECT} rollout status deployment/scanner --timeout=300s",
    ]


def test_scanner_slow_freezes_its_cgroup_on_the_node_and_thaws_it(world):
    w, fake = world()
    with w.fault("scanner-slow"):
        writes = [c for c in fake.commands if c[:3] == ["docker", "exec", NODE] and "printf %s \"$1\" > \"$2\"" in c]
        assert [c[-2:] for c in writes] == [["1", "/sys/fs/cgroup/kubelet.slice/kubelet-kubepods.slice/"
                                                  "cri-containerd-abc.scope/cgroup.freeze"]]
    assert fake.lines("crictl inspect --output go-template --template {{.info.pid}} scanner-1-cid")
    writes = [c[-2] for c in fake.commands if "printf %s \"$1\" > \"$2\"" in c]
    assert writes == ["1", "0"]
    assert fake.commands[-1][3:] == ["-n", PROJECT, "wait", "--for=condition=Ready", "pod/scanner-1", "--timeout=180s"]


def test_an_unknown_fault_is_an_error(world):
    w, _ = world()
    with pytest.raises(ValueError), w.fault("network-cut"):
        pass


@pytest.mark.parametrize("cgroup,expected", [
    ("0::/kubepods/pod1/abc\n", ("/sys/fs/cgroup/kubepods/pod1/abc/cgroup.freeze", "1", "0")),
    ("12:freezer:/kubepods/pod1/abc\n11:memory:/kubepods/pod1/abc\n0::/\n",
     ("/sys/fs/cgroup/freezer/kubepods/pod1/abc/freezer.state", "FROZEN", "THAWED")),
    ("5:cpu,freezer:/k/x\n", ("/sys/fs/cgroup/freezer/k/x/freezer.state", "FROZEN", "THAWED")),
])
def test_freezer_for_cgroup_v1_and_v2(cgroup, expected):
    assert kind_world.freezer(cgroup) == expected


def test_freezer_without_one_is_an_error():
    with pytest.raises(CageError, match="no freezer"):
        kind_world.freezer("3:memory:/x\n")


def test_witness_exec_runs_in_the_witness_pod_with_stdin(world):
    w, fake = world()
    result = w.witness_exec(["python3", "-c", "BOOT"], b"{}", 30)
    assert fake.commands[-1][3:] == ["-n", "yc-attacker", "exec", "-i", "witness-1", "-c", "witness", "--",
                                     "python3", "-c", "BOOT"]
    assert json.loads(result.stdout)["stdin"] == 2 and result.returncode == 0
    assert w.places() == ("agent", "witness")
