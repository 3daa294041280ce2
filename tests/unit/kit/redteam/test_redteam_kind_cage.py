"""The red team's kind cage without a cluster: its settings and policy, the bring-up steps
(commands recorded by a fake runner), CoreDNS's forwarder, removal, and `invoke redteam --kind`."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from addon import policy as policy_model
from kit import kind, settings
from kit.errors import CageError
from kit.redteam import cli, kind_cage, kind_render, kind_world
from kit.runner import Result
from tests.unit.kind.test_kind_backend import DIGEST, VERSION, FakeApi, FakeCluster, calico_manifest

SINK_CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
# kind's CoreDNS configuration (the kubeadm default).
COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


class RedTeamCluster(FakeCluster):
    """FakeCluster plus what the attacker's world asks: its pods, the sink's CA, CoreDNS, the nodes."""

    def __call__(self, argv, **kw):
        argv = [str(a) for a in argv]
        line = " ".join(argv)
        if "get pods -l yolo-cage.role=sink" in line:
            pod = {"metadata": {"name": "sink-1", "namespace": "yc-attacker", "labels": {}},
                   "status": {"phase": "Running", "podIP": "192.168.20.2"}}
            self.commands.append(argv)
            return Result(tuple(argv), 0, json.dumps({"items": [pod]}), "")
        if line.endswith("cat /capture/sink-ca.crt"):
            self.commands.append(argv)
            return Result(tuple(argv), 0, SINK_CA, "")
        if "get configmap coredns" in line:
            self.commands.append(argv)
            return Result(tuple(argv), 0, json.dumps({"data": {"Corefile": COREFILE}}), "")
        if argv[:3] == ["kind", "get", "nodes"]:
            self.commands.append(argv)
            return Result(tuple(argv), 0, "yolo-cage-redteam-control-plane\nyolo-cage-redteam-worker\n", "")
        return super().__call__(argv, **kw)


def _user(tmp_path, **kind_settings):
    manifest = tmp_path / "calico.yaml"
    manifest.write_bytes(calico_manifest())
    return settings.from_mapping({
        "apiVersion": settings.API_VERSION, "kind": settings.KIND, "project": "acme",
        "images": {"tag": "rt1"},
        "backends": {"kind": {"node_image": DIGEST, "calico_version": VERSION, "calico_manifest": str(manifest),
                              **kind_settings}},
    }, source="test")


@pytest.fixture
def cage(tmp_path, monkeypatch):
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed on this CI machine")
        pytest.skip("kubectl is not installed: the overlays cannot be rendered here")
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))
    fake = RedTeamCluster()
    for module in (kind, kind_cage, kind_world):
        monkeypatch.setattr(module, "run", fake)
    backend = kind_cage.backend_for(_user(tmp_path), build=False)
    backend._api = FakeApi()
    return backend, fake


def test_settings_name_the_red_teams_own_cluster_and_project_and_keep_the_users_kind_pins(tmp_path):
    user = _user(tmp_path)
    rt = kind_cage.redteam_settings(user)
    assert (rt.project, rt.backends.kind.cluster_name) == ("acme-redteam", "yolo-cage-redteam")
    assert rt.agent_names == ["dev", "peer"] and rt.backend == "kind"
    assert rt.backends.kind.node_image == DIGEST and rt.backends.kind.calico_manifest == user.backends.kind.calico_manifest
    assert rt.images.tag == "rt1"


def test_the_policy_loosens_only_the_sinks_address(tmp_path):
    checked = policy_model.load(kind_cage.write_policy(tmp_path))
    assert policy_model.loosening(checked) == [
        f"destinations.unsafe_allow_private_networks: {kind_render.SINK_SERVICE_IP}/32"]


def test_up_brings_the_attackers_world_up_before_the_cages_objects(cage):
    backend, fake = cage
    backend.up()
    lines = [" ".join(c) for c in fake.commands]
    order = [
        "kind load docker-image --name yolo-cage-redteam yolo-cage/agent:rt1 yolo-cage/proxy:rt1 "
        "yolo-cage/scanner:rt1 yolo-cage/sink:rt1",
        "-n yc-attacker rollout status deployment/sink",
        "-n yc-attacker rollout status daemonset/node-standin",
        "exec sink-1 -c sink -- cat /capture/sink-ca.crt",
        "-n kube-system patch configmap coredns",
        "-n kube-system rollout restart deployment/coredns",
        "docker exec yolo-cage-redteam-worker ip addr replace 100.100.100.200/32 dev lo",
        "apply --server-side -f -",  # the cage's namespace
        "rollout status deployment/agent-peer",
    ]
    positions = [next(i for i, line in enumerate(lines) if want in line) for want in order]
    assert positions == sorted(positions), lines
    assert ("ConfigMap", kind_render.UPSTREAM_CA_CONFIGMAP) in backend._api.written
    patch = next(c for c in fake.commands if "patch" in c)
    assert "forward . 10.96.0.90 {" in json.loads(patch[-1])["data"]["Corefile"]
    for node in ("yolo-cage-redteam-control-plane", "yolo-cage-redteam-worker"):
        for address in ("169.254.169.254", "100.100.100.200"):
            assert f"docker exec {node} ip addr replace {address}/32 dev lo" in lines


def test_the_rendered_overlay_has_the_red_team_component(cage):
    backend, _ = cage
    backend.up()
    rendered = (backend.state_dir() / "rendered.yaml").read_text()
    assert "redteam-proxy-egress-to-sink" in rendered and "proxy-egress-to-internet" not in rendered


def test_a_failed_world_step_removes_the_cluster_it_created(cage):
    backend, fake = cage
    fake.fail_on = "rollout status deployment/witness"
    with pytest.raises(CageError) as err:
        backend.up()
    assert "attacker's world" in str(err.value)
    assert ["kind", "delete", "cluster", "--name", "yolo-cage-redteam"] in fake.commands


def test_the_cage_objects_need_the_sinks_ca_first(cage):
    backend, _ = cage
    with pytest.raises(CageError, match="CA was not read"):
        backend.extra_objects()


def test_forward_to_keeps_the_options_block_and_refuses_a_corefile_without_forward():
    out = kind_cage.forward_to(COREFILE, "10.96.0.90")
    assert "    forward . 10.96.0.90 {\n       max_concurrent 1000\n    }" in out
    assert out.replace("10.96.0.90", "/etc/resolv.conf") == COREFILE
    assert kind_cage.forward_to("forward . 8.8.8.8 1.1.1.1\n", "10.96.0.90") == "forward . 10.96.0.90\n"
    with pytest.raises(CageError, match="no 'forward"):
        kind_cage.forward_to(".:53 {\n    errors\n}\n", "10.96.0.90")


def test_remove_deletes_only_a_red_team_cluster(cage, tmp_path):
    backend, fake = cage
    assert kind_cage.remove(backend) is False  # none yet
    fake.clusters.add("yolo-cage-redteam")
    assert kind_cage.remove(backend) is True
    assert "yolo-cage-redteam" not in fake.clusters
    other = kind.KindBackend(_user(tmp_path), build=False)
    fake.clusters.add(other.cluster)
    with pytest.raises(CageError, match="not a red-team cluster"):
        kind_cage.remove(other)
    assert other.cluster in fake.clusters


def test_redteam_kind_refuses_the_claude_scenarios():
    with pytest.raises(CageError, match="Compose backend only"):
        cli.run(kind=True, claude=True)
    with pytest.raises(CageError, match="Compose backend only"):
        cli.run(kind=True, only="claude-curl-noproxy")


def test_redteam_kind_starts_scores_and_removes_a_new_cluster(monkeypatch, tmp_path):
    calls = []

    class Backend:
        cluster, project = "yolo-cage-redteam", "yolo-cage-redteam"

        def cluster_exists(self):
            return False

        def up(self):
            calls.append("up")

        def world(self, allow_offhost=False):
            calls.append(f"world offhost={allow_offhost}")
            return "the world"

    monkeypatch.setattr(kind_cage, "backend_for", lambda user, **kw: Backend())
    monkeypatch.setattr(kind_cage, "remove", lambda backend: calls.append("remove"))
    monkeypatch.setattr(cli, "_score", lambda world, agent, only, reports: calls.append(f"score {world} {only}") or 1)
    monkeypatch.setattr(settings, "load", lambda *a, **k: None)
    assert cli.run(kind=True, only="net-,dns-") == 1
    assert calls == ["up", "world offhost=False", "score the world net-,dns-", "remove"]
    calls.clear()
    cli.run(kind=True, keep=True)
    assert "remove" not in calls
