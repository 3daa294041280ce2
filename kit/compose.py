"""The Compose backend: the cage on one machine with Docker Compose.

`docker compose` (through kit.runner) creates and starts the project from
compose/; the Docker SDK inspects it, fills its volumes and runs commands in
it. Bring-up is a list of named, idempotent steps (kit.steps): a failure
removes what this run built, unless ``retain``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kit import agents, ca, composeplan, credentials, console, hostguard, state, volumes
from kit.backend import Backend, CageStatus, Component, ExecResult
from kit.composeplan import AGENT_CA_FILE, DATA_LABEL, PROXY_CA_FILE, Plan
from kit.errors import BackendError, CageError, PrerequisiteError, RunError
from kit.names import LABEL_AGENT, LABEL_ROLE, ROLE_HELPER, image_ref
from kit.runner import run
from kit.settings import Settings
from kit.steps import Step, run_steps

PROJECT_LABEL = "com.docker.compose.project"
AUDIT_PATH = "/var/log/yolo-cage/audit.jsonl"
WAIT_TIMEOUT = 300
CORE_IMAGES = ("netguard", "scanner", "proxy", "agent")


@dataclass
class _Run:
    """What one `up` learned and built, for later steps and for undo."""

    isolation: hostguard.Isolation | None = None
    plan: Plan | None = None
    had_containers: bool = False
    volumes_before: set[str] = field(default_factory=set)
    digests: dict[str, str] = field(default_factory=dict)
    bound: credentials.Bound | None = None  # real values found on the host


class ComposeBackend(Backend):
    name = "compose"

    def __init__(
        self,
        settings: Settings,
        *,
        policy_file: Path | None = None,
        extra_files: Sequence[Path] = (),
        test_labels: Mapping[str, str] | None = None,
        upstream_cas: Mapping[str, bytes] | None = None,
        build: bool = True,
        client=None,
    ):
        self.settings = settings
        self.project = settings.project
        self.policy_file = policy_file or (Path(settings.policy) if settings.policy else None)
        self.extra_files = tuple(extra_files)
        self.test_labels = dict(test_labels or {})
        self.upstream_cas = dict(upstream_cas or {})
        self.build = build
        self._client = client

    # --- Docker access ---------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            self._client = docker_client()
        return self._client

    def engine(self) -> hostguard.Engine:
        return engine_of(self.client)

    def compose(self, plan: Plan, *args: str, digests: Mapping[str, str] | None = None, timeout: float | None = None):
        """Run ``docker compose`` on the planned files with the planned environment."""
        argv = ["docker", "compose", "--project-name", self.project, "--project-directory", str(composeplan.COMPOSE_DIR)]
        for path in plan.files():
            argv += ["--file", str(path)]
        env = {**plan.env(), **_digest_env(digests or _read_digests(plan))}
        return run([*argv, *args], env=env, timeout=timeout or WAIT_TIMEOUT + 120)

    def plan(self, isolation: hostguard.Isolation | None = None, *, create_tokens: bool = True) -> Plan:
        isolation = isolation or hostguard.choose(self.settings, self.engine())
        settings = agents.with_added(self.settings)  # the settings' agents and those of `agent.new`
        tokens = {a.name: _token(self.project, a.name, create_tokens) for a in settings.agents}
        return Plan(
            settings=settings,
            isolation=isolation,
            agents=composeplan.agent_plans(
                settings, tokens, *credentials.for_agents(self.project, [a.name for a in settings.agents], create=create_tokens)
            ),
            state_dir=state.project_dir(self.project),
            extra_files=self.extra_files,
            test_labels=self.test_labels,
        )

    # --- up ----------------------------------------------------------------------------

    def up(self, *, retain: bool = False) -> None:
        ctx = _Run()
        steps = [
            Step("check the policy", self._check_policy),
            Step("read the credentials' real values (they never enter an agent)", lambda: self._bind_credentials(ctx)),
            Step("check the Docker engine and choose host isolation", lambda: self._choose_isolation(ctx)),
            Step("images (built when missing or changed, cached otherwise)", lambda: self._images(ctx)),
            Step("cage CA and agent credentials", lambda: self._credentials(ctx)),
            Step("create networks, volumes and containers", lambda: self._create(ctx), undo=lambda: self._undo(ctx)),
            Step("write the CA and proxy configuration into volumes", lambda: self._fill_volumes(ctx)),
            Step("check out the agents' repositories into new workspaces", lambda: self._workspaces(ctx)),
            Step("start and wait until every part is healthy", lambda: self._start(ctx)),
        ]
        run_steps(steps, retain=retain)
        self._summary(ctx)

    def _check_policy(self) -> None:
        from addon import policy as policy_model

        if self.policy_file is None:
            console.info("  policy: the defaults of addon/policy.py")
            return
        try:
            checked = policy_model.load(self.policy_file)
        except policy_model.PolicyError as exc:
            raise CageError(str(exc)) from None
        for item in policy_model.loosening(checked):
            console.warn(f"policy loosens isolation: {item}")

    def _bind_credentials(self, ctx: _Run) -> None:
        policy = credentials.load_policy(self.policy_file)
        ctx.bound = credentials.resolve(policy, self.policy_file.parent if self.policy_file else None)
        credentials.record(self.project, ctx.bound)
        for item in ctx.bound.resolved:
            console.info(f"  credential {item.name} ({item.mode}): bound")
        for item in ctx.bound.skipped:
            console.info(f"  credential {item}")

    def _choose_isolation(self, ctx: _Run) -> None:
        engine = self.engine()
        ctx.isolation = hostguard.choose(self.settings, engine)
        say = console.warn if ctx.isolation.mode == "none" else console.info
        say(f"  host isolation: {ctx.isolation.mode} ({ctx.isolation.reason})")

    def needed_images(self, isolation: hostguard.Isolation) -> list[str]:
        return [n for n in CORE_IMAGES if n != "netguard" or isolation.uses_netguard]

    def _images(self, ctx: _Run) -> None:
        assert ctx.isolation is not None
        names = self.needed_images(ctx.isolation)
        if self.build:
            from kit import images

            images.build(images.options(self.settings.images, only=",".join(names)))
        missing = [n for n in names if not _has_image(self.client, image_ref(n, self.settings.images.tag))]
        if missing:
            refs = ", ".join(image_ref(n, self.settings.images.tag) for n in missing)
            raise PrerequisiteError(f"missing image(s) {refs}: build them with `uv run invoke build`")

    def _credentials(self, ctx: _Run) -> None:
        ca.ensure(self.project)
        ctx.plan = self.plan(ctx.isolation)
        composeplan.write_generated(ctx.plan)

    def _create(self, ctx: _Run) -> None:
        assert ctx.plan is not None
        ctx.had_containers = bool(self._containers(all_states=True))
        ctx.volumes_before = {v.name for v in self._volumes()}
        self.compose(ctx.plan, "create", "--pull", "never", "--remove-orphans")

    def _fill_volumes(self, ctx: _Run) -> None:
        assert ctx.plan is not None
        plan = ctx.plan
        subnets = {p.network: self._subnets(p.network) for p in plan.agents}
        proxy_image = image_ref("proxy", self.settings.images.tag)
        uid, gid = volumes.image_user(self.client, proxy_image)
        cage_ca = ca.ensure(self.project)
        labels = {**self.test_labels, "yolo-cage.project": self.project, LABEL_ROLE: ROLE_HELPER}
        config = self._proxy_files(plan, subnets, uid, gid)
        key = {PROXY_CA_FILE: volumes.File(cage_ca.mitmproxy_pem(), 0o400, uid, gid)}
        agent_files = {AGENT_CA_FILE: volumes.File(cage_ca.cert_pem, 0o444)}
        agents.check_registry(config["agents.json"].data)
        # The addon re-reads agents.json by itself: agents come and go without a proxy restart.
        restart_on = {name: spec for name, spec in config.items() if name != "agents.json"}
        ctx.digests = {"proxy": _digest(restart_on, key), "ca": _digest(agent_files)}
        proxy_values, scanner_values = self._credential_files(ctx, uid, gid)
        ctx.digests["scanner"] = _digest(proxy_values, scanner_values)
        if ctx.had_containers and ctx.digests == _read_digests(plan):
            # Rewriting would briefly empty files the running proxy reads: the registry is replaced in place.
            from kit.agents_compose import replace_file

            replace_file(self.client, self._volume("proxy-config"), "agents.json", config["agents.json"], proxy_image, labels)
            console.info("  unchanged since the last `up`")
            return
        volumes.replace_content(
            self.client, self._volume("proxy-config"), proxy_image, config, {"upstream-ca": volumes.Dir()}, labels
        )
        # The confdir: mitmproxy (uid) must be able to write beside the key.
        volumes.replace_content(
            self.client, self._volume("ca-key"), proxy_image, key, {".": volumes.Dir(0o700, uid, gid)}, labels
        )
        volumes.replace_content(self.client, self._volume("ca-cert"), proxy_image, agent_files, None, labels)
        # Real values: read by the proxy (to inject) and the scanner (to recognise), each as its own user.
        for key, files in (("credentials", proxy_values), ("scanner-credentials", scanner_values)):
            owner = next(iter(files.values()), None)
            root = volumes.Dir(0o500, owner.uid, owner.gid) if owner else volumes.Dir(0o555)
            volumes.replace_content(self.client, self._volume(key), proxy_image, files, {".": root}, labels)
        # Containers are recreated when what they read at start changes (and only then).
        state.write_private(plan.state_dir / "rendered" / "digests.json", json.dumps(ctx.digests).encode())

    def _proxy_files(self, plan: Plan, subnets, uid: int, gid: int) -> dict[str, volumes.File]:
        policy_text = (
            self.policy_file.read_bytes()
            if self.policy_file
            else b"# The defaults of addon/policy.py.\napiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"
        )
        files = {
            "policy.yaml": volumes.File(policy_text, 0o440, uid, gid),
            "agents.json": volumes.File(composeplan.registry_json(plan.agents, subnets), 0o440, uid, gid),
        }
        for name, pem in self.upstream_cas.items():
            files[f"upstream-ca/{name}.pem"] = volumes.File(pem, 0o444)
        return files

    def _workspaces(self, ctx: _Run) -> None:
        from kit.agents_compose import fill_new_workspaces

        assert ctx.plan is not None
        fill_new_workspaces(self, ctx.plan, ctx.volumes_before)

    def _credential_files(self, ctx: _Run, uid: int, gid: int) -> tuple[dict[str, volumes.File], dict[str, volumes.File]]:
        values = ctx.bound.files() if ctx.bound is not None else {}
        suid, sgid = volumes.image_user(self.client, image_ref("scanner", self.settings.images.tag))
        proxy = {name: volumes.File(data, 0o400, uid, gid) for name, data in values.items()}
        scanner = {name: volumes.File(data, 0o400, suid, sgid) for name, data in values.items()}
        return proxy, scanner

    def _start(self, ctx: _Run) -> None:
        from kit.agents_compose import ComposeAgents

        assert ctx.plan is not None
        wait = ("--detach", "--wait", "--wait-timeout", str(WAIT_TIMEOUT), "--pull", "never")
        try:
            if len(ctx.plan.agents) > 1:
                # The proxy first: it joins the further agents' networks through the API, not
                # through its Compose definition (kit/agents_compose.py says why).
                self.compose(ctx.plan, "up", *wait, "proxy", digests=ctx.digests)
                ComposeAgents(self).attach_proxy(ctx.plan.agents)
            self.compose(ctx.plan, "up", *wait, "--remove-orphans", digests=ctx.digests)
        except RunError as exc:
            raise CageError(f"{exc}\n{exc.output}\n{self.diagnose()}") from exc

    def _undo(self, ctx: _Run) -> None:
        if ctx.had_containers:
            console.warn("the cage existed before this `up`; leaving it as it is (run `uv run invoke down` to remove it)")
            return
        self._remove_everything(ctx.plan, keep=ctx.volumes_before)

    def _summary(self, ctx: _Run) -> None:
        status = self.status()
        for comp in status.components:
            health = {True: "healthy", False: "UNHEALTHY", None: "-"}[comp.healthy]
            console.info(f"  {comp.role:9} {comp.name:40} {comp.state:8} {health}")
        assert ctx.isolation is not None
        console.info(f"\nThe cage is up (project {self.project}, host isolation: {ctx.isolation.mode}).")
        console.info("Next: uv run invoke attach    (Claude Code in tmux; `uv run invoke shell` for a shell)")

    def diagnose(self) -> str:
        """Why parts are not healthy: their state, last health check output and last log lines."""
        lines = []
        for container in self._containers(all_states=True):
            attrs = container.attrs.get("State", {})
            health = attrs.get("Health") or {}
            if attrs.get("Status") == "running" and health.get("Status", "healthy") == "healthy":
                continue
            lines.append(f"--- {container.name}: {attrs.get('Status')} / health {health.get('Status', '-')}")
            for probe in (health.get("Log") or [])[-2:]:
                lines.append(f"    health check (exit {probe.get('ExitCode')}): {probe.get('Output', '').strip()[:400]}")
            logs = container.logs(tail=15).decode("utf-8", "replace").rstrip()
            lines += [f"    | {line}" for line in logs.splitlines()]
        return "\n".join(lines) or "(every container is running and healthy)"

    # --- down --------------------------------------------------------------------------

    def down(self, *, remove_data: bool = False) -> list[str]:
        plan = self.plan(self._isolation_for_down(), create_tokens=False)
        composeplan.write_generated(plan)
        args = ["down", "--remove-orphans", "--timeout", "20"] + (["--volumes"] if remove_data else [])
        self.compose(plan, *args, timeout=300)
        kept = set() if remove_data else {v.name for v in self._volumes() if v.attrs["Labels"].get(DATA_LABEL) == "true"}
        self._remove_everything(plan, keep=kept)
        self._remove_leftover_rules(plan)
        if remove_data:
            state.forget(self.project)
        return sorted(kept)

    def _isolation_for_down(self) -> hostguard.Isolation:
        try:
            return hostguard.choose(self.settings, self.engine())
        except CageError:
            # Nothing could have been started without isolation; any plan tears down.
            return hostguard.Isolation("none", "down", hostguard.COMPOSE_DIR / "host-unprotected.yaml")

    def _remove_everything(self, plan: Plan | None, keep: set[str]) -> None:
        """Remove every container, network and volume of the project except the ``keep`` volumes."""
        for container in self._containers(all_states=True):
            container.remove(force=True, v=False)
        for network in self.client.networks.list(filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            network.reload()
            # A container from outside the project attached by hand would keep the network alive.
            for endpoint in network.attrs.get("Containers") or {}:
                network.disconnect(endpoint, force=True)
            network.remove()
        for volume in self._volumes():
            if volume.name not in keep:
                volume.remove(force=True)

    def _remove_leftover_rules(self, plan: Plan) -> None:
        """netguard removes its rules when it stops; a killed netguard cannot, so check and clean."""
        image = image_ref("netguard", self.settings.images.tag)
        if not plan.isolation.uses_netguard or not _has_image(self.client, image):
            return
        output = self.client.containers.run(
            image,
            entrypoint=["/bin/sh", "-c", netguard_script(), "netguard", "remove"],
            command=[],
            network_mode="host",
            user="0:0",
            cap_drop=["ALL"],
            cap_add=["NET_ADMIN", "NET_RAW"],
            security_opt=["no-new-privileges:true"],
            environment={"YOLO_CAGE_BRIDGE_PREFIX": hostguard.bridge_prefix(self.project)},
            labels={**self.test_labels, "yolo-cage.project": self.project, LABEL_ROLE: ROLE_HELPER},
            remove=True,
        )
        if output.strip():
            console.info(output.decode("utf-8", "replace").strip())

    # --- inspection and access ---------------------------------------------------------------

    def status(self) -> CageStatus:
        comps = [_component(c) for c in self._containers(all_states=True)]
        comps.sort(key=lambda c: (_ROLE_ORDER.get(c.role, 9), c.name))
        return CageStatus(backend=self.name, project=self.project, components=tuple(comps))

    def agents(self) -> list[str]:
        running = sorted(c.agent for c in self.status().components if c.role == "agent" and c.agent)
        return running or list(self.settings.agent_names)

    def container_for(self, target: str):
        """The container of an agent (by name) or of a role (proxy, scanner, netguard)."""
        for container in self._containers(all_states=False):
            labels = container.labels
            if labels.get(LABEL_AGENT) == target or (labels.get(LABEL_ROLE) == target and target != "agent"):
                return container
        if target == "agent" and self.settings.agents:
            return self.container_for(self.settings.agents[0].name)
        raise BackendError(
            f"no running container for {target!r} in project {self.project}; "
            "is the cage up? (`uv run invoke status`)"
        )

    def exec(self, agent, argv, *, user=None, env=None, stdin=None, timeout=None) -> ExecResult:
        container = self.container_for(agent)
        cmd = ["docker", "exec"] + (["--interactive"] if stdin is not None else [])
        if user:
            cmd += ["--user", user]
        for key, value in (env or {}).items():
            cmd += ["--env", f"{key}={value}"]
        result = run([*cmd, container.name, *argv], check=False, input=stdin, timeout=timeout, echo=False)
        return ExecResult(result.returncode, result.stdout.encode(), result.stderr.encode())

    def shell(self, agent: str) -> None:
        container = self.container_for(agent)
        run(["docker", "exec", "-it", container.name, "bash", "-l"], capture=False, check=False)

    def attach(self, agent: str) -> None:
        container = self.container_for(agent)
        run(["docker", "exec", "-it", container.name, "/usr/local/bin/yolo-cage-tmux"], capture=False, check=False)

    def logs(self, target: str, *, follow: bool = False, tail: int = 200) -> None:
        container = self.container_for(target)
        argv = ["docker", "logs", "--tail", str(tail)] + (["--follow"] if follow else [])
        run([*argv, container.name], capture=False, check=False)

    def read_audit(self, *, tail: int | None = None) -> list[str]:
        """The proxy's audit log lines (from its volume: works while the cage is down, too)."""
        labels = {**self.test_labels, "yolo-cage.project": self.project, LABEL_ROLE: ROLE_HELPER}
        image = image_ref("proxy", self.settings.images.tag)
        raw = read_volume_file(self.client, self._volume("audit"), "audit.jsonl", image, labels)
        lines = [line for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
        return lines[-tail:] if tail else lines

    # --- helpers ---------------------------------------------------------------------

    def _containers(self, *, all_states: bool):
        return self.client.containers.list(all=all_states, filters={"label": f"{PROJECT_LABEL}={self.project}"})

    def _volumes(self):
        return self.client.volumes.list(filters={"label": f"{PROJECT_LABEL}={self.project}"})

    def _volume(self, key: str) -> str:
        return f"{self.project}_{key}"

    def _subnets(self, network_key: str) -> list[str]:
        network = self.client.networks.get(f"{self.project}_{network_key}")
        configs = (network.attrs.get("IPAM") or {}).get("Config") or []
        return [c["Subnet"] for c in configs if c.get("Subnet")]


_ROLE_ORDER = {"netguard": 0, "scanner": 1, "proxy": 2, "agent": 3}


def _component(container) -> Component:
    labels = container.labels
    st = container.attrs.get("State", {})
    health = (st.get("Health") or {}).get("Status")
    return Component(
        role=labels.get(LABEL_ROLE, "?"),
        name=container.name,
        state=st.get("Status", container.status),
        healthy=None if health is None else health == "healthy",
        agent=labels.get(LABEL_AGENT),
        detail=health or "",
    )


def docker_client():
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as exc:
        raise PrerequisiteError(
            f"no Docker engine answers ({exc}); start dockerd (or Docker Desktop), or set DOCKER_HOST"
        ) from exc
    return client


def engine_of(client) -> hostguard.Engine:
    version = client.version()
    info = client.info()
    security = " ".join(info.get("SecurityOptions") or [])
    return hostguard.Engine(
        version=version.get("Version", "0"),
        os_type=info.get("OSType", "linux"),
        operating_system=info.get("OperatingSystem", ""),
        rootless="rootless" in security,
    )


def netguard_script() -> str:
    """netguard's program as the shell sees it (compose.yaml's `$$` is a literal `$`)."""
    doc = yaml.safe_load(composeplan.BASE_FILE.read_text())
    return doc["x-netguard-script"].replace("$$", "$")


def read_volume_file(client, volume: str, path: str, image: str, labels: Mapping[str, str] | None = None) -> bytes:
    """One file from a volume, through a never-started helper container and the archive API."""
    from docker.errors import DockerException, NotFound

    helper = None
    try:
        helper = client.containers.create(
            image, entrypoint=["/bin/true"], command=[], network_mode="none",
            volumes={volume: {"bind": "/volume", "mode": "ro"}}, labels=dict(labels or {}),
        )  # fmt: skip
        stream, _ = helper.get_archive(f"/volume/{path}")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            extracted = tar.extractfile(member) if member else None
            return extracted.read() if extracted else b""
    except NotFound:
        return b""
    except DockerException as exc:
        raise CageError(f"cannot read {path} from volume {volume}: {exc}") from exc
    finally:
        if helper is not None:
            helper.remove(force=True)


def _has_image(client, ref: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


def _token(project: str, agent: str, create: bool) -> str:
    path = state.project_dir(project) / "tokens" / agent
    if create or path.exists():
        return state.agent_token(project, agent)
    return "not-yet-issued"


def _digest(*groups: Mapping[str, volumes.File]) -> str:
    h = hashlib.sha256()
    for group in groups:
        for name in sorted(group):
            spec = group[name]
            h.update(json.dumps([name, spec.mode, spec.uid, spec.gid]).encode() + hashlib.sha256(spec.data).digest())
    return h.hexdigest()[:16]


def _read_digests(plan: Plan) -> dict[str, str]:
    path = plan.state_dir / "rendered" / "digests.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _digest_env(digests: Mapping[str, str]) -> dict[str, str]:
    return {
        "YOLO_CAGE_PROXY_CONFIG_DIGEST": digests.get("proxy", ""),
        "YOLO_CAGE_CA_DIGEST": digests.get("ca", ""),
        "YOLO_CAGE_SCANNER_CONFIG_DIGEST": digests.get("scanner", ""),
    }
