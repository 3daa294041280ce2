"""The kind backend without a cluster: cluster config, Calico manifest checks,
and the bring-up steps (commands recorded by a fake runner)."""

from __future__ import annotations

import json

import pytest
import yaml

from kit import kind, kindcluster, settings
from kit.errors import CageError, ConfigError, PrerequisiteError, RunError, StepError
from kit.runner import Result

DIGEST = "kindest/node:v1.32.2@sha256:" + "a" * 64
VERSION = "v3.29.3"


def calico_manifest(version=VERSION, pool=None, drop=()):
    env = [{"name": "CALICO_IPV4POOL_CIDR", "value": pool}] if pool else []
    node = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "calico-node", "namespace": "kube-system"},
        "spec": {"template": {"spec": {
            "initContainers": [{"name": "install-cni", "image": f"registry.example.test/calico/cni:{version}"}],
            "containers": [{"name": "calico-node", "image": f"registry.example.test:5000/calico/node:{version}", "env": env}],
        }}},
    }
    ctrl = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "calico-kube-controllers", "namespace": "kube-system"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": f"calico/kube-controllers:{version}"}]}}},
    }
    docs = [node, ctrl]
    for image in drop:
        for d in docs:
            for key in ("initContainers", "containers"):
                cs = d["spec"]["template"]["spec"].get(key, [])
                cs[:] = [c for c in cs if image not in c["image"]]
    return yaml.safe_dump_all(docs).encode()


PIN = kindcluster.load_pin()


def test_cluster_config_sets_the_pinned_node_image_everywhere():
    config = kindcluster.cluster_config(DIGEST)
    assert [n["image"] for n in config["nodes"]] == [DIGEST]
    assert config["networking"]["disableDefaultCNI"] is True


def test_a_node_image_without_digest_is_refused():
    with pytest.raises(CageError, match="digest"):
        kindcluster.cluster_config("kindest/node:v1.32.2")


def test_a_cluster_config_with_the_default_cni_is_refused(tmp_path):
    config = yaml.safe_load(kindcluster.CLUSTER_FILE.read_text())
    config["networking"]["disableDefaultCNI"] = False
    config["networking"]["ipFamily"] = "dual"
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as err:
        kindcluster.cluster_config(DIGEST, path)
    assert len(err.value.problems) == 2


def test_the_pinned_calico_manifest_passes():
    assert kindcluster.manifest_problems(calico_manifest(), VERSION, PIN, "192.168.0.0/16") == []
    assert kindcluster.manifest_problems(calico_manifest(pool="192.168.0.0/16"), VERSION, PIN, "192.168.0.0/16") == []


@pytest.mark.parametrize(
    "data,word",
    [
        (calico_manifest(version="v3.28.0"), "not at v3.29.3"),
        (calico_manifest(drop=("kube-controllers",)), "no calico/kube-controllers"),
        (calico_manifest(pool="10.244.0.0/16"), "podSubnet"),
        (b"{unclosed: [", "not YAML"),
    ],
)
def test_a_wrong_calico_manifest_is_refused(data, word):
    problems = kindcluster.manifest_problems(data, VERSION, PIN, "192.168.0.0/16")
    assert any(word in p for p in problems), problems


def test_calico_source_is_the_users_or_the_pinned_release():
    assert kindcluster.calico_source(VERSION, None, PIN).endswith(f"/{VERSION}/manifests/calico.yaml")
    assert kindcluster.calico_source(VERSION, "/opt/calico.yaml", PIN) == "/opt/calico.yaml"


def test_fetch_refuses_plain_http_and_missing_files(tmp_path):
    with pytest.raises(CageError, match="https"):
        kindcluster.fetch("http://example.invalid/calico.yaml")
    with pytest.raises(CageError, match="does not exist"):
        kindcluster.fetch(str(tmp_path / "nope.yaml"))
    (tmp_path / "c.yaml").write_bytes(b"x: 1\n")
    assert kindcluster.fetch(str(tmp_path / "c.yaml")) == b"x: 1\n"


# --- bring-up with a fake runner ---------------------------------------------------


class FakeCluster:
    """Answers kind/kubectl/docker like a machine where they work; records every command."""

    def __init__(self, fail_on: str | None = None):
        self.commands: list[list[str]] = []
        self.clusters: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, argv, **kw):
        argv = [str(a) for a in argv]
        self.commands.append(argv)
        line = " ".join(argv)
        if self.fail_on and self.fail_on in line:
            raise RunError(argv, 1, "simulated failure")
        out = ""
        if argv[:3] == ["kind", "get", "clusters"]:
            out = "\n".join(sorted(self.clusters))
        elif argv[:3] == ["kind", "create", "cluster"]:
            self.clusters.add(argv[argv.index("--name") + 1])
        elif argv[:3] == ["kind", "delete", "cluster"]:
            self.clusters.discard(argv[argv.index("--name") + 1])
        elif "sysctl" in argv:
            out = "1"
        elif "get" in argv and "-o" in argv and "json" in argv:
            out = json.dumps({"items": []})
        return Result(tuple(argv), 0, out, "")


class FakeApi:
    def __init__(self):
        self.written = []

    def replace_namespaced_secret(self, name, ns, obj):
        self.written.append(("Secret", name))

    def replace_namespaced_config_map(self, name, ns, obj):
        self.written.append(("ConfigMap", name))


@pytest.fixture
def backend(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))
    manifest = tmp_path / "calico.yaml"
    manifest.write_bytes(calico_manifest())
    cfg = settings.from_mapping(
        {
            "apiVersion": "yolo-cage.dev/v1alpha1",
            "kind": "Settings",
            "backend": "kind",
            "agents": [{"name": "alice"}, {"name": "bob"}],
            "backends": {"kind": {"node_image": DIGEST, "calico_version": VERSION, "calico_manifest": str(manifest)}},
        },
        source="test",
    )

    def make(fail_on=None):
        fake = FakeCluster(fail_on)
        monkeypatch.setattr(kind, "run", fake)
        return kind.KindBackend(cfg, build=False, api=FakeApi()), fake

    return make


def test_up_runs_the_steps_in_order(backend):
    b, fake = backend()
    b.up()
    lines = [" ".join(c) for c in fake.commands]
    order = [
        "kind create cluster --name yolo-cage",
        "apply --server-side --force-conflicts -f -",
        "rollout status daemonset/calico-node",
        "kind load docker-image --name yolo-cage yolo-cage/agent:local yolo-cage/proxy:local yolo-cage/scanner:local",
        "rollout status deployment/agent-bob",
    ]
    positions = [next(i for i, line in enumerate(lines) if want in line) for want in order]
    assert positions == sorted(positions), lines
    written = set(b._api.written)
    assert ("Secret", "yolo-cage-agent-alice") in written and ("Secret", "yolo-cage-proxy-ca") in written


def test_up_reuses_an_existing_cluster(backend):
    b, fake = backend()
    fake.clusters.add("yolo-cage")
    b.up()
    assert not any(c[:3] == ["kind", "create", "cluster"] for c in fake.commands)


def test_a_failed_step_removes_the_cluster_it_created(backend):
    b, fake = backend(fail_on="rollout status deployment/proxy")
    with pytest.raises(StepError) as err:
        b.up()
    assert err.value.step == "wait until every part is ready"
    assert ["kind", "delete", "cluster", "--name", "yolo-cage"] in fake.commands
    assert "yolo-cage" not in fake.clusters


def test_retain_keeps_a_failed_cluster(backend):
    b, fake = backend(fail_on="rollout status deployment/proxy")
    with pytest.raises(StepError):
        b.up(retain=True)
    assert "yolo-cage" in fake.clusters


def test_a_changed_calico_manifest_is_refused_on_the_next_up(backend, tmp_path):
    b, fake = backend()
    b.up()
    manifest = tmp_path / "calico.yaml"
    manifest.write_bytes(manifest.read_bytes() + b"\n# edited\n")
    with pytest.raises(StepError, match="changed since it was first used"):
        b.up()


def test_exec_runs_kubectl_exec_in_the_agents_pod(backend, monkeypatch):
    b, fake = backend()
    monkeypatch.setattr(b, "pod_for", lambda target: f"pod-of-{target}")
    result = b.exec("alice", ["curl", "-sS", "http://x"], env={"A": "1"}, stdin=b"hi")
    assert result.returncode == 0
    assert fake.commands[-1] == [
        "kubectl", "--context", "kind-yolo-cage", "-n", "yolo-cage", "exec", "-i",
        "pod-of-alice", "-c", "agent", "--", "env", "A=1", "curl", "-sS", "http://x",
    ]
    with pytest.raises(CageError, match="user"):
        b.exec("alice", ["id"], user="root")


def test_down_keeps_data_unless_asked(backend):
    b, fake = backend()
    fake.clusters.add("yolo-cage")
    b.down()
    assert "yolo-cage" in fake.clusters
    assert any("delete" in c and "app.kubernetes.io/part-of=yolo-cage" in c for c in fake.commands)
    b.down(remove_data=True)
    assert "yolo-cage" not in fake.clusters


def test_without_kind_status_and_down_say_what_the_backend_needs(backend, monkeypatch):
    b, _ = backend()

    def missing(argv, **kw):
        raise RunError(argv, None, "", f"{argv[0]} not found on PATH")

    monkeypatch.setattr(kind, "run", missing)
    for call in (b.status, b.down, b.agents):
        with pytest.raises(PrerequisiteError, match="kind is not installed: the kind backend needs kind"):
            call()
    # A failing kind (installed, but broken) stays the command's own error.
    monkeypatch.setattr(kind, "run", lambda argv, **kw: (_ for _ in ()).throw(RunError(argv, 1, "boom")))
    with pytest.raises(RunError):
        b.status()


def test_registry_binds_each_agent_to_its_token_hash():
    cfg = settings.from_mapping(
        {"apiVersion": "yolo-cage.dev/v1alpha1", "kind": "Settings", "agents": [{"name": "alice"}]}, source="t"
    )
    reg = json.loads(kind.registry_json(cfg, {"alice": "secret-token"}, "192.168.0.0/16"))
    assert reg["alice"]["networks"] == ["192.168.0.0/16"]
    assert "secret-token" not in json.dumps(reg)


def test_the_audit_reader_pod_meets_restricted_and_mounts_read_only():
    from kit import podsecurity

    args = kind._reader_pod_args("yolo-cage/proxy:local", "/var/log/yolo-cage/audit.jsonl")
    spec = json.loads(next(a for a in args if a.startswith("--overrides=")).split("=", 1)[1])["spec"]
    assert podsecurity.restricted_problems(spec) == []
    assert spec["volumes"][0]["persistentVolumeClaim"]["readOnly"] is True


def test_a_bad_policy_stops_up_before_anything_runs(backend, tmp_path, monkeypatch):
    b, fake = backend()
    bad = tmp_path / "policy.yaml"
    bad.write_text("apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\nno_such_key: 1\n")
    b.policy_file = bad
    with pytest.raises(StepError) as err:
        b.up()
    assert err.value.step == "check the policy"
    assert fake.commands == []
