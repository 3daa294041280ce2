"""The kind backend: the same cage on a local Kubernetes cluster with Calico.

``up`` is an ordered list of named, idempotent steps (kit.steps): create the
cluster (default CNI off), install Calico at the pinned version and wait for
it, load the locally built images into the nodes, create the namespace and
the ConfigMaps/Secrets the pods read (through the Kubernetes API, never via
files), apply the rendered overlay, wait until every part is ready. A failed
step removes what this run built unless ``retain``.

``kind`` and ``kubectl`` run through kit.runner; reads (status, agents) and
the objects holding secrets use the Kubernetes Python client.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kit import agents, ca, console, credentials, kindcluster, kindrender, state
from kit.backend import Backend, CageStatus, Component, ExecResult
from kit.errors import BackendError, CageError, PrerequisiteError, RunError
from kit.names import LABEL_AGENT, LABEL_ROLE, PROXY_PORT, image_ref
from kit.runner import run
from kit.settings import Settings
from kit.steps import Step, run_steps

CAGE_IMAGES = ("agent", "proxy", "scanner")
WAIT = "300s"
_ROLE_ORDER = {"scanner": 0, "proxy": 1, "agent": 2}
_DEFAULT_POLICY = b"# The defaults of addon/policy.py.\napiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"


@dataclass
class _Run:
    created_cluster: bool = False
    created_namespace: bool = False
    inputs_digest: str = ""
    manifests: list[dict[str, Any]] = field(default_factory=list)


class KindBackend(Backend):
    name = "kind"
    # The images `up` builds and loads into the nodes (a test world adds its own).
    images: tuple[str, ...] = CAGE_IMAGES

    def __init__(
        self,
        settings: Settings,
        *,
        policy_file: Path | None = None,
        build: bool = True,
        test_labels: Mapping[str, str] | None = None,
        api=None,
        components: Sequence[Path] = (),
    ):
        self.settings = settings
        self.build = build
        self.test_labels = dict(test_labels or {})
        self.project = settings.project
        self.kind_settings = settings.backends.kind
        self.cluster = self.kind_settings.cluster_name
        self.context = f"kind-{self.cluster}"
        self.policy_file = policy_file or (Path(settings.policy) if settings.policy else None)
        self._api = api
        # Extra kustomize components for the rendered overlay (test worlds only).
        self.components = tuple(components)

    # --- access ------------------------------------------------------------------

    @property
    def api(self):
        """A CoreV1Api bound to this cluster's kubeconfig context."""
        if self._api is None:
            from kubernetes import client, config

            try:
                self._api = client.CoreV1Api(config.new_client_from_config(context=self.context))
            except Exception as exc:  # noqa: BLE001 - no kubeconfig / no context: say which
                raise BackendError(f"no kubeconfig context {self.context!r}: is the cluster up? ({exc})") from None
        return self._api

    def kubectl(self, *args: str, **kw):
        return run(["kubectl", "--context", self.context, *args], **kw)

    def state_dir(self) -> Path:
        return state.project_dir(self.project) / "kind"

    def cage_settings(self) -> Settings:
        """The settings with the agents of `agent.new` added (kit/agents.py)."""
        return agents.with_added(self.settings)

    def cluster_exists(self) -> bool:
        try:
            out = run(["kind", "get", "clusters"], echo=False).stdout.split()
        except RunError as exc:
            if exc.returncode is None:  # not installed: say what the backend needs, not a bare command failure
                raise PrerequisiteError(
                    "kind is not installed: the kind backend needs kind (v0.27.0 or newer), kubectl and Docker "
                    "(README, 'Kubernetes (kind)')"
                ) from None
            raise
        return self.cluster in out

    # --- up -------------------------------------------------------------------------

    def up(self, *, retain: bool = False) -> None:
        ctx = _Run()
        steps = [
            Step("check the policy", self._check_policy),
            Step("read the credentials' real values (they never enter an agent)", self._bind_credentials),
            Step("check kind, kubectl, docker and the images", self._prerequisites),
            Step("render the manifests", lambda: self._render(ctx)),
            Step(f"kind cluster {self.cluster}", lambda: self._cluster(ctx), undo=lambda: self._undo_cluster(ctx)),
            Step(f"Calico {self.kind_settings.calico_version}, ready", self._calico),
            Step("load the cage's images into the nodes", self._load_images),
            *self._world_steps(),
            Step(
                f"namespace {self.project}, ConfigMaps and Secrets",
                lambda: self._namespace_and_secrets(ctx),
                undo=lambda: self._undo_namespace(ctx),
            ),
            Step("apply the workloads and NetworkPolicies", lambda: self._apply(ctx)),
            Step("wait until every part is ready", self._wait_ready),
        ]
        run_steps(steps, retain=retain)
        console.info(f"\nThe cage is up on kind cluster {self.cluster}. Next: uv run invoke attach --kind")

    def _check_policy(self) -> None:
        """The proxy must not start on a policy it would refuse; loosening is said out loud."""
        from addon import policy as policy_model

        if self.policy_file is None:
            return
        try:
            checked = policy_model.load(self.policy_file)
        except policy_model.PolicyError as exc:
            raise CageError(str(exc)) from None
        for item in policy_model.loosening(checked):
            console.warn(f"policy loosens isolation: {item}")

    def _bind_credentials(self) -> credentials.Bound:
        policy = credentials.load_policy(self.policy_file)
        bound = credentials.resolve(policy, self.policy_file.parent if self.policy_file else None)
        credentials.record(self.project, bound)
        return bound

    def _prerequisites(self) -> None:
        for argv in (["kind", "version"], ["kubectl", "version", "--client"], ["docker", "version"]):
            try:
                run(argv, echo=False)
            except CageError as exc:
                raise PrerequisiteError(f"{argv[0]} is needed for the kind backend: {exc}") from None
        if self.build:
            from kit import images

            images.build(images.options(self.settings.images, only=",".join(self.images)))
        missing = [n for n in self.images if not _has_image(image_ref(n, self.settings.images.tag))]
        if missing:
            refs = ", ".join(image_ref(n, self.settings.images.tag) for n in missing)
            raise PrerequisiteError(f"missing image(s) {refs}: build them with `uv run invoke build`")

    def _render(self, ctx: _Run) -> None:
        overlay = self.state_dir() / "overlay"
        agents_ = self.cage_settings().agents
        _, env = credentials.for_agents(self.project, [a.name for a in agents_])
        specs = [dataclasses.replace(kindrender.AgentSpec.from_settings(a), env=tuple(sorted(env[a.name].items()))) for a in agents_]
        kindrender.write_overlay(overlay, self.project, specs, self.components)
        ctx.manifests = kindrender.load_all(kindrender.kustomize(overlay))
        for doc in ctx.manifests:
            if doc["kind"] == "Namespace":
                doc["metadata"]["labels"].update(self.test_labels)
        config = kindcluster.cluster_config(self.kind_settings.node_image)
        problems = kindcluster.proxy_address_problems(config, _proxy_cluster_ip(ctx.manifests))
        if problems:
            raise CageError("; ".join(problems))
        state.write_private(self.state_dir() / "cluster.yaml", yaml.safe_dump(config).encode())
        state.write_private(self.state_dir() / "rendered.yaml", yaml.safe_dump_all(ctx.manifests).encode())

    def _cluster(self, ctx: _Run) -> None:
        if self.cluster_exists():
            console.info(f"  cluster {self.cluster} exists: reusing it")
            return
        config = self.state_dir() / "cluster.yaml"
        # No --wait: without a CNI the node only becomes Ready once Calico runs.
        run(["kind", "create", "cluster", "--name", self.cluster, "--config", str(config)], timeout=900)
        ctx.created_cluster = True

    def _undo_cluster(self, ctx: _Run) -> None:
        if ctx.created_cluster:
            run(["kind", "delete", "cluster", "--name", self.cluster], check=False)

    def _calico(self) -> None:
        pin = kindcluster.load_pin()
        version = self.kind_settings.calico_version
        source = kindcluster.calico_source(version, self.kind_settings.calico_manifest, pin)
        console.info(f"  manifest: {source}")
        data = kindcluster.fetch(source)
        pod_subnet = kindcluster.cluster_config(self.kind_settings.node_image)["networking"]["podSubnet"]
        problems = kindcluster.manifest_problems(data, version, pin, pod_subnet)
        if problems:
            raise CageError(f"Calico manifest {source} refused:\n" + "\n".join(f"  - {p}" for p in problems))
        self._trust_on_first_use(version, data)
        self._preload_calico_images(data)
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=data.decode())
        self._loose_rpf_if_needed()
        self.kubectl("-n", "kube-system", "rollout", "status", "daemonset/calico-node", f"--timeout={WAIT}")
        self.kubectl("-n", "kube-system", "rollout", "status", "deployment/calico-kube-controllers", f"--timeout={WAIT}")
        self.kubectl("wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={WAIT}")
        self.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", f"--timeout={WAIT}")

    def _trust_on_first_use(self, version: str, data: bytes) -> None:
        """Remember the manifest's digest per version; refuse a changed one later."""
        record = self.state_dir() / f"calico-{version}.sha256"
        digest = kindcluster.sha256(data)
        if record.exists() and record.read_text().strip() != digest:
            raise CageError(
                f"the Calico {version} manifest changed since it was first used "
                f"(sha256 {record.read_text().strip()} then, {digest} now); remove {record} to accept it"
            )
        if not record.exists():
            state.write_private(record, (digest + "\n").encode())
            console.info(f"  manifest sha256 {digest} (recorded in {record})")

    def _preload_calico_images(self, data: bytes) -> None:
        """Air-gapped: load Calico's images into the nodes when this machine has them."""
        docs = [d for d in yaml.safe_load_all(data) if d]
        local = [i for i in dict.fromkeys(kindcluster.images(docs)) if _has_image(i)]
        if local:
            run(["kind", "load", "docker-image", "--name", self.cluster, *local], timeout=900)

    def _loose_rpf_if_needed(self) -> None:
        # Felix refuses to start when the node's rp_filter is "loose" (2), as on
        # some kind hosts. Its check guards against spoofed source addresses;
        # the cage's pods cannot spoof (no NET_RAW: every capability dropped).
        node = f"{self.cluster}-control-plane"
        value = run(["docker", "exec", node, "sysctl", "-n", "net.ipv4.conf.all.rp_filter"], echo=False).stdout.strip()
        if value == "2":
            console.info("  the node's rp_filter is loose: setting FELIX_IGNORELOOSERPF=true")
            self.kubectl("-n", "kube-system", "set", "env", "daemonset/calico-node", "FELIX_IGNORELOOSERPF=true")

    def _load_images(self) -> None:
        refs = [image_ref(n, self.settings.images.tag) for n in self.images]
        run(["kind", "load", "docker-image", "--name", self.cluster, *refs], timeout=1800)

    def _namespace_and_secrets(self, ctx: _Run) -> None:
        self._refuse_other_cage()
        namespace = next(d for d in ctx.manifests if d["kind"] == "Namespace")
        existing = self.kubectl("get", "namespace", self.project, "--ignore-not-found", "-o", "name", echo=False)
        ctx.created_namespace = not existing.stdout.strip()
        self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(namespace))
        objects = kindrender.cage_objects(self.cage_inputs()) + self.extra_objects()
        for obj in objects:
            _replace(self.api, obj)
        ctx.inputs_digest = restart_digest(objects)

    def _world_steps(self) -> list[Step]:
        """Steps a test world runs once the nodes have the images, before the cage's objects."""
        return []

    def extra_objects(self) -> list[dict[str, Any]]:
        """ConfigMaps/Secrets a test world adds to the cage's namespace (through the API)."""
        return []

    def _undo_namespace(self, ctx: _Run) -> None:
        if ctx.created_namespace and not ctx.created_cluster:
            self.kubectl("delete", "namespace", self.project, "--wait=false", check=False)

    def _refuse_other_cage(self) -> None:
        """One cage per cluster: the proxy's fixed ClusterIP can be held only once."""
        ip = _proxy_cluster_ip(kindrender.load_all((self.state_dir() / "rendered.yaml").read_text()))
        out = self.kubectl("get", "services", "--all-namespaces", "-o", "json", echo=False).stdout
        for svc in json.loads(out)["items"]:
            meta = svc["metadata"]
            if svc["spec"].get("clusterIP") == ip and meta["namespace"] != self.project:
                raise CageError(
                    f"cluster {self.cluster} already gives {ip} to {meta['namespace']}/{meta['name']}: "
                    "run this project on its own cluster (backends.kind.cluster_name)"
                )

    def cage_inputs(self) -> kindrender.CageInputs:
        cage_ca = ca.ensure(self.project)
        bound = self._bind_credentials()  # before the registry: it names the bound placeholders
        settings = self.cage_settings()
        tokens = {a.name: state.agent_token(self.project, a.name) for a in settings.agents}
        pod_subnet = kindcluster.cluster_config(self.kind_settings.node_image)["networking"]["podSubnet"]
        return kindrender.CageInputs(
            project=self.project,
            ca_cert_pem=cage_ca.cert_pem,
            ca_key_and_cert_pem=cage_ca.mitmproxy_pem(),
            policy_yaml=(self.policy_file.read_bytes() if self.policy_file else _DEFAULT_POLICY).decode(),
            agents_json=registry_json(settings, tokens, pod_subnet),
            proxy_urls={name: f"http://{name}:{token}@proxy:{PROXY_PORT}" for name, token in tokens.items()},
            credentials=bound.files(),
        )

    def _apply(self, ctx: _Run) -> None:
        rendered = self.state_dir() / "rendered.yaml"
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(rendered))
        self._remove_dropped_agents()
        # Pods read the CA through a subPath mount and their environment from
        # Secrets: neither follows a change, so changed inputs restart them.
        # Only the digest is kept, on the host (never in the cluster).
        record = self.state_dir() / "inputs.sha256"
        if record.exists() and record.read_text().strip() != ctx.inputs_digest:
            console.info("  the CA, policy, tokens or credentials changed: restarting the cage's pods")
            self.kubectl("-n", self.project, "rollout", "restart", "deployment", "-l", "app.kubernetes.io/part-of=yolo-cage")
        elif record.exists():
            from kit.agents_kind import nudge_proxy

            nudge_proxy(self)  # a changed registry reaches the running proxy in seconds, not 60-90 s
        state.write_private(record, (ctx.inputs_digest + "\n").encode())

    def _remove_dropped_agents(self) -> None:
        """Agents no longer in the settings: their Deployment goes, their data stays."""
        keep = set(self.cage_settings().agent_names)
        out = self.kubectl("-n", self.project, "get", "deployments", "-l", f"{LABEL_ROLE}=agent", "-o", "json", echo=False)
        for item in json.loads(out.stdout)["items"]:
            agent = item["metadata"]["labels"].get(LABEL_AGENT)
            if agent not in keep:
                self.kubectl("-n", self.project, "delete", "deployment", item["metadata"]["name"])

    def _wait_ready(self) -> None:
        names = ["deployment/scanner", "deployment/proxy"] + [f"deployment/agent-{a}" for a in self.cage_settings().agent_names]
        for name in names:
            self.kubectl("-n", self.project, "rollout", "status", name, f"--timeout={WAIT}")

    # --- down -----------------------------------------------------------------------

    def down(self, *, remove_data: bool = False) -> list[str]:
        """With ``remove_data`` the whole cluster goes; otherwise only the cage's
        workloads, Secrets and policies, and the data claims (workspaces, home
        directories, audit log) are kept, with the cluster that holds them."""
        if not self.cluster_exists():
            console.info(f"  no kind cluster {self.cluster}: nothing to remove")
            return []
        if remove_data:
            run(["kind", "delete", "cluster", "--name", self.cluster])
            return []
        kinds = "deployments,services,networkpolicies,configmaps,secrets,serviceaccounts"
        selector = "app.kubernetes.io/part-of=yolo-cage"
        self.kubectl("-n", self.project, "delete", kinds, "-l", selector, "--ignore-not-found", "--wait=true")
        out = self.kubectl("-n", self.project, "get", "pvc", "-o", "name", echo=False, check=False)
        kept = [line.split("/", 1)[1] for line in out.stdout.split() if "/" in line]
        if kept:
            console.info(f"  kept data claims in cluster {self.cluster}: {', '.join(kept)}")
            console.info("  (`uv run invoke down --kind --remove-data` deletes the cluster and them)")
        return kept

    # --- inspection and access --------------------------------------------------------

    def status(self) -> CageStatus:
        if not self.cluster_exists():
            return CageStatus(backend=self.name, project=self.project)
        pods = self.api.list_namespaced_pod(self.project, label_selector=LABEL_ROLE).items
        comps = sorted((_component(p) for p in pods), key=lambda c: (_ROLE_ORDER.get(c.role, 9), c.name))
        return CageStatus(backend=self.name, project=self.project, components=tuple(comps))

    def agents(self) -> list[str]:
        running = sorted({c.agent for c in self.status().components if c.role == "agent" and c.agent})
        return running or list(self.settings.agent_names)

    def pod_for(self, target: str) -> str:
        """The running pod of an agent (by name) or of a role (proxy, scanner)."""
        selector = f"{LABEL_AGENT}={target}" if target not in ("proxy", "scanner") else f"{LABEL_ROLE}={target}"
        pods = self.api.list_namespaced_pod(self.project, label_selector=selector).items
        running = [p.metadata.name for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        if not running:
            raise BackendError(
                f"no running pod for {target!r} in namespace {self.project} of cluster {self.cluster}; "
                "is the cage up? (`uv run invoke status --kind`)"
            )
        return sorted(running)[0]

    def exec(self, agent, argv, *, user=None, env=None, stdin=None, timeout=None) -> ExecResult:
        if user not in (None, "1000", "1000:1000", "dev"):
            raise BackendError("kind: commands run as the pod's user (1000); another user cannot be chosen")
        pod = self.pod_for(agent)
        prefix = ["env", *(f"{k}={v}" for k, v in env.items())] if env else []
        cmd = ["kubectl", "--context", self.context, "-n", self.project, "exec"]
        cmd += ["-i"] if stdin is not None else []
        cmd += [pod, "-c", _container(agent), "--", *prefix, *argv]
        result = run(cmd, check=False, input=stdin, timeout=timeout, echo=False)
        return ExecResult(result.returncode, result.stdout.encode(), result.stderr.encode())

    def _interactive(self, agent: str, *argv: str) -> None:
        pod = self.pod_for(agent)
        run(
            ["kubectl", "--context", self.context, "-n", self.project, "exec", "-it", pod, "-c", "agent", "--", *argv],
            capture=False,
            check=False,
        )

    def shell(self, agent: str) -> None:
        self._interactive(agent, "bash", "-l")

    def attach(self, agent: str) -> None:
        self._interactive(agent, "/usr/local/bin/yolo-cage-tmux")

    def logs(self, target: str, *, follow: bool = False, tail: int = 200) -> None:
        pod = self.pod_for(target)
        argv = ["logs", pod, "-c", _container(target), f"--tail={tail}"] + (["--follow"] if follow else [])
        self.kubectl("-n", self.project, *argv, capture=False, check=False)

    def read_audit(self, *, tail: int | None = None) -> list[str]:
        """The proxy's audit log lines: from the proxy pod, or, while the cage is
        down, from a short-lived reader pod mounting the kept audit claim."""
        path = "/var/log/yolo-cage/audit.jsonl"
        try:
            pod = self.pod_for("proxy")
        except BackendError:
            out = self.kubectl("-n", self.project, *_reader_pod_args(image_ref("proxy", self.settings.images.tag), path), echo=False)
        else:
            out = self.kubectl("-n", self.project, "exec", pod, "-c", "proxy", "--", "cat", path, echo=False)
        lines = [line for line in out.stdout.splitlines() if line.strip()]
        return lines[-tail:] if tail else lines


def _reader_pod_args(image: str, path: str) -> list[str]:
    """`kubectl run` of a restricted, read-only pod that prints one file of the audit claim."""
    container = {
        "name": "reader",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["cat", path],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "audit", "mountPath": "/var/log/yolo-cage", "readOnly": True}],
    }
    spec = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "audit", "persistentVolumeClaim": {"claimName": "audit", "readOnly": True}}],
    }
    overrides = json.dumps({"apiVersion": "v1", "spec": spec})
    return ["run", "yolo-cage-audit-reader", "--rm", "-i", "--restart=Never", f"--image={image}", f"--overrides={overrides}", "--quiet"]

def _container(target: str) -> str:
    return target if target in ("proxy", "scanner") else "agent"


def registry_json(settings: Settings, tokens: Mapping[str, str], pod_subnet: str) -> bytes:
    """``agents.json`` for the proxy. On kind an agent's address is any pod
    address (pods are not pinned to subnets); its credential identifies it, and
    the NetworkPolicies let only agents reach the proxy at all."""
    import hashlib

    placeholders, _ = credentials.for_agents(settings.project, [a.name for a in settings.agents])
    registry = {
        a.name: {
            "token_sha256": hashlib.sha256(tokens[a.name].encode()).hexdigest(),
            "networks": [pod_subnet],
            **credentials.git_fields(a.git_branch, a.repo),
            "credentials": placeholders[a.name],
        }
        for a in settings.agents
    }
    return (json.dumps(registry, indent=2, sort_keys=True) + "\n").encode()


def restart_digest(objects: Sequence[Mapping[str, Any]]) -> str:
    """The digest of what the cage's pods read only at start (a change restarts them all).
    Agents come and go without restarting the others: the proxy re-reads the registry, and an
    agent's own Secret is new to its new pod, so neither is part of it."""
    restart_on = [o for o in objects if o["metadata"]["name"] != kindrender.AGENTS_SECRET
                  and LABEL_AGENT not in o["metadata"]["labels"]]  # fmt: skip
    return kindcluster.sha256(json.dumps(restart_on, sort_keys=True).encode())


def _proxy_cluster_ip(manifests: Sequence[Mapping[str, Any]]) -> str:
    for doc in manifests:
        if doc.get("kind") == "Service" and doc["metadata"]["name"] == "proxy":
            return doc["spec"]["clusterIP"]
    raise CageError("the manifests have no proxy Service")


def _has_image(ref: str) -> bool:
    return run(["docker", "image", "inspect", ref], check=False, echo=False).returncode == 0


def _replace(api, obj: Mapping[str, Any]) -> None:
    """Create or replace one ConfigMap / Secret (its data never touches a file)."""
    from kubernetes.client.exceptions import ApiException

    kind, meta = obj["kind"], obj["metadata"]
    try:
        getattr(api, f"replace_namespaced_{_snake(kind)}")(meta["name"], meta["namespace"], obj)
    except ApiException as exc:
        if exc.status != 404:
            raise CageError(f"could not write {kind} {meta['name']}: {exc.reason}") from None
        getattr(api, f"create_namespaced_{_snake(kind)}")(meta["namespace"], obj)


def _snake(kind: str) -> str:
    return {"ConfigMap": "config_map", "Secret": "secret"}[kind]


def _component(pod) -> Component:
    labels = pod.metadata.labels or {}
    statuses = pod.status.container_statuses or []
    ready = next((c.status == "True" for c in pod.status.conditions or [] if c.type == "Ready"), None)
    restarts = sum(c.restart_count for c in statuses)
    return Component(
        role=labels.get(LABEL_ROLE, "?"),
        name=pod.metadata.name,
        state=(pod.status.phase or "unknown").lower(),
        healthy=ready,
        agent=labels.get(LABEL_AGENT),
        detail=f"{restarts} restarts" if restarts else "",
    )
