"""The kind half of the agent lifecycle without a cluster: the rendered per-agent objects,
the NetworkPolicies applied to them, and agent.new / agent.rm against a fake API server and
a fake kubectl (kind cannot run on the development machine; the live path is untested here)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from kit import agents, kind, kindcluster, kindrender, parity, settings
from kit.agents_kind import ANNOTATION, KindAgents
from kit.errors import StepError
from kit.names import LABEL_AGENT
from kit.netpol import Addresses, Cluster, workload_pods
from kit.runner import Result

DIGEST = "kindest/node:v1.32.2@sha256:" + "a" * 64
REF = {"Deployment": "deployment.apps", "PersistentVolumeClaim": "persistentvolumeclaim", "Secret": "secret"}


class FakeKube:
    """kubectl and the API server in one: objects by reference ("deployment.apps/agent-x") with labels."""

    def __init__(self, fail_on: str = ""):
        self.objects: dict[str, dict[str, str]] = {}
        self.commands: list[str] = []
        self.applied: list[list[dict]] = []
        self.secrets: dict[str, dict] = {}
        self.patches: list[tuple[str, dict]] = []
        self.tar_bytes = 0
        self.fail_on = fail_on

    # kubectl, through kit.kind.run
    def __call__(self, argv, **kw):
        argv = [str(a) for a in argv]
        line = " ".join(argv)
        self.commands.append(line)
        if self.fail_on and self.fail_on in line:
            from kit.errors import RunError

            raise RunError(argv, 1, "simulated failure")
        out, code = "", 0
        if " apply " in f" {line} ":
            docs = [d for d in yaml.safe_load_all(kw["input"]) if d]
            self.applied.append(docs)
            for d in docs:
                self.objects[f"{REF[d['kind']]}/{d['metadata']['name']}"] = dict(d["metadata"].get("labels") or {})
        elif " get " in line and "-l" in argv:
            want = argv[argv.index("-l") + 1].split("=", 1)
            out = "\n".join(ref for ref, labels in sorted(self.objects.items()) if labels.get(want[0]) == want[1])
        elif " delete " in line:
            self.objects.pop(argv[argv.index("delete") + 1], None)
        elif "exec" in argv and "test" in argv:
            code = 1  # no /workspace/.git yet
        elif "exec" in argv and "tar" in argv:
            self.tar_bytes = len(kw["input"])
        return Result(tuple(argv), code, out, "")

    # the API server, through KindBackend.api
    def replace_namespaced_secret(self, name, ns, obj):
        self.commands.append(f"API replace secret {name}")
        self.secrets[name] = obj
        self.objects[f"secret/{name}"] = dict(obj["metadata"]["labels"])

    def replace_namespaced_config_map(self, name, ns, obj):
        pass

    def list_namespaced_pod(self, ns, label_selector=""):
        assert label_selector == "yolo-cage.role=proxy"
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name="proxy-7d9f-abcde"))])

    def patch_namespaced_pod(self, name, ns, body):
        self.patches.append((name, body))

    def registry(self) -> dict:
        return json.loads(base64.b64decode(self.secrets[kindrender.AGENTS_SECRET]["data"]["agents.json"]))


@pytest.fixture
def cage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("YOLO_CAGE_QUIET", "1")
    cfg = settings.from_mapping(
        {"apiVersion": settings.API_VERSION, "kind": settings.KIND, "backend": "kind", "agents": [{"name": "dev"}],
         "backends": {"kind": {"node_image": DIGEST}}},
        source="t",
    )  # fmt: skip

    def make(fail_on: str = ""):
        fake = FakeKube(fail_on)
        monkeypatch.setattr(kind, "run", fake)
        backend = kind.KindBackend(cfg, build=False, api=fake)
        monkeypatch.setattr(backend, "pod_for", lambda target: f"pod-{target}")
        return backend, fake

    return make


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "a.txt").write_text("a\n")
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"], check=True)
    return path


def rendered(backend) -> list[dict]:
    ctx = kind._Run()
    backend._render(ctx)
    return ctx.manifests


def by_agent(manifests: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for doc in manifests:
        agent = doc["metadata"].get("labels", {}).get(LABEL_AGENT)
        if agent:
            out.setdefault(agent, []).append(doc)
    return out


# --- rendering --------------------------------------------------------------------------------------


def test_an_added_agent_gets_its_own_objects_and_the_others_stay_byte_identical(cage) -> None:
    backend, _ = cage()
    before = by_agent(rendered(backend))
    agents._record(backend.project, settings.Agent(name="dave", branch="feature/d", resources=settings.Resources(memory="1g", cpus=1.5)), 1.0)
    after = by_agent(rendered(backend))
    assert after["dev"] == before["dev"]  # server-side apply of the same object changes nothing: no rollout
    mine = {(d["kind"], d["metadata"]["name"]): d for d in after["dave"]}
    assert set(mine) == {("Deployment", "agent-dave"), ("PersistentVolumeClaim", "workspace-dave"),
                         ("PersistentVolumeClaim", "home-dave")}  # fmt: skip
    deployment = mine[("Deployment", "agent-dave")]
    assert deployment["spec"]["selector"]["matchLabels"][LABEL_AGENT] == "dave"
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["YOLO_CAGE_AGENT"]["value"] == "dave" and env["YOLO_CAGE_BRANCH"]["value"] == "feature/d"
    assert env["YOLO_CAGE_PROXY_URL"]["valueFrom"]["secretKeyRef"]["name"] == "yolo-cage-agent-dave"
    assert container["resources"]["limits"] == {"cpu": "1500m", "memory": "1Gi"}
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"workspace-dave", "home-dave"}
    assert pod["spec"]["automountServiceAccountToken"] is False and pod["spec"]["dnsPolicy"] == "None"


def test_the_network_policies_cover_added_agents_and_keep_every_agent_from_every_other(cage) -> None:
    backend, _ = cage()
    for i, name in enumerate(("alice", "bob", "carol")):
        agents._record(backend.project, settings.Agent(name=name), float(i))
    manifests = rendered(backend)
    config = kindcluster.cluster_config(DIGEST)
    assert parity.check_kind(manifests, config) == []
    pods = {p.labels.get(LABEL_AGENT) or p.labels["yolo-cage.role"]: p
            for _, p in workload_pods(manifests, Addresses.of([config["networking"]["podSubnet"]]))}  # fmt: skip
    cluster = Cluster(manifests, {})
    names = ["dev", "alice", "bob", "carol"]
    for src in names:
        assert cluster.allowed(pods[src], pods["proxy"]), f"{src} cannot reach the proxy"  # control
        for dst in names:
            if src != dst:
                assert cluster.allowed(pods[src], pods[dst]) == [], (src, dst)


def test_adding_an_agent_does_not_change_what_restarts_the_cage(cage, tmp_path: Path) -> None:
    backend, _ = cage()
    first = kind.restart_digest(kindrender.cage_objects(backend.cage_inputs()))
    agents._record(backend.project, settings.Agent(name="dave"), 1.0)
    objects = kindrender.cage_objects(backend.cage_inputs())
    assert {o["metadata"]["name"] for o in objects} >= {"yolo-cage-agent-dave"}
    assert kind.restart_digest(objects) == first
    # Control: a changed policy does change it (the proxy reads the policy only at start).
    (tmp_path / "policy.yaml").write_text("apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\nscan: {mode: report}\n")
    backend.policy_file = tmp_path / "policy.yaml"
    assert kind.restart_digest(kindrender.cage_objects(backend.cage_inputs())) != first


# --- the lifecycle against the fake API -----------------------------------------------------------------


def test_agent_new_applies_only_its_objects_fills_its_workspace_and_nudges_the_proxy(cage, repo: Path) -> None:
    backend, fake = cage()
    report = agents.new(backend, agents.NewAgent("dave", "feature/d", str(repo)))
    assert report.workspace == "checked out" and fake.tar_bytes > 0
    (applied,) = fake.applied
    assert {(d["kind"], d["metadata"]["name"]) for d in applied} == {
        ("Deployment", "agent-dave"), ("PersistentVolumeClaim", "workspace-dave"), ("PersistentVolumeClaim", "home-dave")
    }  # fmt: skip
    assert fake.secrets["yolo-cage-agent-dave"]["data"]["proxy-url"]
    registry = fake.registry()
    assert set(registry) == {"dev", "dave"} and registry["dave"]["branch"] == "feature/d"
    # The proxy learns it without a restart: its pod is annotated, its Deployment is not touched.
    assert [name for name, _ in fake.patches] == ["proxy-7d9f-abcde"]
    assert ANNOTATION in fake.patches[0][1]["metadata"]["annotations"]
    assert not any("rollout restart" in c or "deployment/proxy" in c or "agent-dev" in c for c in fake.commands)
    order = [next(i for i, c in enumerate(fake.commands) if want in c)
             for want in (" apply ", "rollout status deployment/agent-dave", "tar -x")]  # fmt: skip
    assert order == sorted(order)


def test_a_failed_agent_new_on_kind_removes_what_it_made_and_its_identity(cage) -> None:
    backend, fake = cage(fail_on="rollout status deployment/agent-dave")
    with pytest.raises(StepError):
        agents.new(backend, agents.NewAgent("dave"))
    assert [ref for ref, labels in fake.objects.items() if labels.get(LABEL_AGENT) == "dave"] == []
    assert "dave" not in fake.registry()
    assert agents.added(backend.project) == []


def test_agent_rm_on_kind_revokes_first_then_deletes_its_objects_keeping_the_workspace_if_asked(cage) -> None:
    backend, fake = cage()
    agents.new(backend, agents.NewAgent("dave"))
    agents.new(backend, agents.NewAgent("erin"))
    fake.commands.clear()
    removed = agents.remove(backend, "dave", keep_workspace=True)
    assert removed == ["deployment.apps/agent-dave", "secret/yolo-cage-agent-dave", "persistentvolumeclaim/home-dave"]
    assert set(fake.registry()) == {"dev", "erin"}
    deletes = [i for i, c in enumerate(fake.commands) if " delete " in c]
    assert len(deletes) == 3 and all("--wait=true" in fake.commands[i] for i in deletes)
    revoked = fake.commands.index(f"API replace secret {kindrender.AGENTS_SECRET}")
    assert revoked < deletes[0]  # its credential stops working before anything of it goes
    assert [r for r, labels in fake.objects.items() if labels.get(LABEL_AGENT) == "dave"] == ["persistentvolumeclaim/workspace-dave"]
    assert any(labels.get(LABEL_AGENT) == "erin" for labels in fake.objects.values())
    assert [a.name for a in agents.added(backend.project)] == ["erin"]
