"""The red team's view of a cage on kind, through kubectl and the nodes' container engine.

The same :class:`~kit.redteam.world.World` interface as Compose, so one catalog
and one scorecard serve both backends:

- parts are found by label (``yolo-cage.role``, ``yolo-cage.agent``) in the
  cage's namespace, the attacker's parts in ``yc-attacker``; addresses from the
  pods' status and the Services' specs;
- the sink's capture is read with ``kubectl exec ... cat`` (the sink image has
  coreutils); marks are byte offsets, like Compose;
- the "host" is two listeners on the red team's port: the node stand-in in
  every node's network namespace, and one on the machine that runs kind;
- faults act on the scanner: stopped (its Deployment scaled to 0, then back),
  frozen (its container's cgroup frozen on the node, as ``docker pause`` does);
- rows are adapted by :mod:`kit.redteam.kind_catalog`; controls that no agent
  path can carry run in the witness pod (:meth:`witness_exec`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kit import parity
from kit.backend import ExecResult
from kit.errors import BackendError, CageError
from kit.ipsets import Addresses
from kit.names import LABEL_AGENT, LABEL_ROLE, PROXY_PORT
from kit.netpol import Cluster, External, Pod
from kit.redteam import compose_world, kind_catalog
from kit.redteam.catalog import Technique
from kit.redteam.hostlistener import Connection, HostListener
from kit.redteam.kind_render import (
    ATTACKER_NS,
    CAPTURE_FILE,
    NODE_LISTENER_PORT,
    ROLE_NODE_STANDIN,
    ROLE_WITNESS,
)
from kit.redteam.targets import Targets
from kit.redteam.world import AGENT, WITNESS, World
from kit.runner import Result, run

# The IPv4 metadata addresses (the cluster is IPv4 only): on every node's loopback in the red-team cluster.
METADATA_ADDRESSES = tuple(a for a in compose_world.METADATA_ADDRESSES if ipaddress.ip_address(a).version == 4)
WAIT = "300s"
_INET = re.compile(r"\binet (\d+\.\d+\.\d+\.\d+)/")


class KindWorld(World):
    def __init__(self, backend, *, allow_offhost: bool = False):
        self.backend = backend  # kit.kind.KindBackend (the red team's)
        self.project = backend.project
        self.context = backend.context
        self.cluster = backend.cluster
        self.allow_offhost = allow_offhost

    # --- commands ----------------------------------------------------------------------------

    def kubectl(self, *args: str, input: bytes | str | None = None, timeout: float = 120, check: bool = True) -> Result:
        return run(["kubectl", "--context", self.context, *args], input=input, timeout=timeout, check=check, echo=False)

    def _json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def node_exec(self, node: str, *argv: str, timeout: float = 60) -> str:
        """A command in a node's own namespaces (kind nodes are containers of this machine's engine)."""
        return run(["docker", "exec", node, *argv], timeout=timeout, echo=False).stdout

    # --- finding parts -------------------------------------------------------------------------

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Running pods that are not being deleted, oldest name first."""
        items = self._json("-n", namespace, "get", "pods", "-l", selector)["items"]
        live = [p for p in items if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        return sorted(live, key=lambda p: p["metadata"]["name"])

    def pod(self, namespace: str, selector: str, what: str) -> dict[str, Any]:
        found = self.pods(namespace, selector)
        if not found:
            hint = " (the red team's attacker world: `uv run invoke redteam --kind` starts it)"
            raise BackendError(f"no running pod for {what} ({selector}) in namespace {namespace} of cluster "
                               f"{self.cluster}" + (hint if namespace == ATTACKER_NS else ""))
        return found[0]

    def _role(self, role: str) -> dict[str, Any]:
        return self.pod(self.project, f"{LABEL_ROLE}={role}", f"the {role}")

    def _agent(self, name: str) -> dict[str, Any]:
        return self.pod(self.project, f"{LABEL_ROLE}=agent,{LABEL_AGENT}={name}", f"agent {name!r}")

    def _service_ip(self, namespace: str, name: str) -> str:
        return self._json("-n", namespace, "get", "service", name)["spec"]["clusterIP"]

    def agent_names(self) -> list[str]:
        return sorted(p["metadata"]["labels"].get(LABEL_AGENT, "") for p in self.pods(self.project, f"{LABEL_ROLE}=agent"))

    def nodes(self) -> list[str]:
        return run(["kind", "get", "nodes", "--name", self.cluster], echo=False).stdout.split()

    # --- targets -------------------------------------------------------------------------------

    def targets(self, agent: str, host_port: int | None) -> Targets:
        me, proxy = self._agent(agent), self._role("proxy")
        sink = self.pod(ATTACKER_NS, f"{LABEL_ROLE}=sink", "the sink")
        others = [a for a in self.agent_names() if a != agent]
        other_ip = self._agent(others[0])["status"]["podIP"] if others else None
        extra = {"sink_pod_ip": sink["status"]["podIP"], "api_ip": self._service_ip("default", "kubernetes"),
                 "kube_dns_ip": self._service_ip("kube-system", "kube-dns")}
        return Targets(
            agent=agent,
            proxy_host="proxy",
            # The proxy pod's own address: the agent's allowed flow ends there, and other ports of it mean something.
            proxy_ip=proxy["status"]["podIP"],
            proxy_port=PROXY_PORT,
            sink_ip=self._service_ip(ATTACKER_NS, "sink"),
            sink_name=f"sink.{ATTACKER_NS}.svc.cluster.local",
            scanner_ip=self._role("scanner")["status"]["podIP"],
            other_agent=others[0] if others else None,
            other_agent_ip=other_ip,
            gateway_ip=me["status"]["hostIP"],  # the node: where the pod's route leads
            host_ips=tuple(self._host_addresses()),
            host_port=host_port,
            proxy_egress_ip=proxy["status"]["podIP"],
            offhost_ok=self.allow_offhost or self.proxy_contained(proxy),
            local_addresses=frozenset(self.local_metadata()),
            extra=tuple(sorted(extra.items())),
        )

    def _host_addresses(self) -> list[str]:
        """The machine that runs kind: its address on kind's Docker network, and its own."""
        out = []
        raw = run(["docker", "network", "inspect", "kind", "--format", "{{json .IPAM.Config}}"], check=False, echo=False)
        for config in (json.loads(raw.stdout) if raw.returncode == 0 and raw.stdout.strip() else None) or []:
            gateway = config.get("Gateway")
            if gateway and ipaddress.ip_address(gateway).version == 4:
                out.append(gateway)
        own = compose_world.own_address()
        if own and own not in out:
            out.append(own)
        return out

    def proxy_contained(self, proxy: Mapping[str, Any]) -> bool:
        """Do the cage's NetworkPolicies, as the cluster holds them now, keep the proxy off every
        address outside the pod network? (The red-team component removes its internet egress.)"""
        pod_net = parity.load_kind_cluster_config()["networking"]["podSubnet"]
        policies = self._json("-n", self.project, "get", "networkpolicies")["items"]
        namespace = self._json("get", "namespace", self.project)
        cluster = Cluster([namespace, *policies], {})
        meta = proxy["metadata"]
        me = Pod(meta["name"], meta["namespace"], meta.get("labels") or {}, Addresses.of([pod_net]))
        outside = External("outside", Addresses.of(["0.0.0.0/0", "::/0"]) - Addresses.of([pod_net]))
        return not cluster.one_side(me, outside, "Egress")

    def local_metadata(self) -> list[str]:
        """The metadata addresses every node holds on its loopback (so a packet to them stays there)."""
        nodes = self.nodes()
        if not nodes:
            return []
        held = [set(_INET.findall(self.node_exec(node, "ip", "-o", "-4", "addr", "show", "dev", "lo"))) for node in nodes]
        return [a for a in METADATA_ADDRESSES if all(a in h for h in held)]

    def allowed_sources(self) -> set[str]:
        """The proxy, and the witness (its controls reach the sink directly, by design)."""
        pods = self.pods(self.project, f"{LABEL_ROLE}=proxy") + self.pods(ATTACKER_NS, f"{LABEL_ROLE}={ROLE_WITNESS}")
        return {p["status"]["podIP"] for p in pods if p["status"].get("podIP")}

    # --- captures -----------------------------------------------------------------------------

    def _capture(self, pod: Mapping[str, Any]) -> bytes:
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]["name"]
        out = self.kubectl("-n", meta["namespace"], "exec", meta["name"], "-c", container, "--", "cat", CAPTURE_FILE)
        return out.stdout.encode()

    def _sink(self) -> dict[str, Any]:
        return self.pod(ATTACKER_NS, f"{LABEL_ROLE}=sink", "the sink")

    def sink_mark(self) -> int:
        return len(self._capture(self._sink()))

    def sink_lines(self, since: int) -> list[str]:
        return _after(self._capture(self._sink()), since)

    def node_standins(self) -> list[dict[str, Any]]:
        return self.pods(ATTACKER_NS, f"{LABEL_ROLE}={ROLE_NODE_STANDIN}")

    def node_marks(self) -> dict[str, int]:
        return {p["metadata"]["name"]: len(self._capture(p)) for p in self.node_standins()}

    def node_connections(self, marks: Mapping[str, int]) -> list[Connection]:
        """What reached the node stand-ins since ``marks``: one connection per TCP connection, its bytes joined."""
        out = []
        for pod in self.node_standins():
            lines = _after(self._capture(pod), marks.get(pod["metadata"]["name"], 0))
            out += connections([json.loads(line) for line in lines if line.strip()])
        return out

    def host_listener(self) -> contextlib.AbstractContextManager:
        return KindHostListener(self)

    # --- kind's catalog and the witness ---------------------------------------------------------

    def adapt(self, technique: Technique) -> Technique | str:
        return kind_catalog.adapt(technique)

    def places(self) -> tuple[str, ...]:
        return (AGENT, WITNESS)

    def witness_exec(self, argv: Sequence[str], stdin: bytes, timeout: float) -> ExecResult:
        pod = self.pod(ATTACKER_NS, f"{LABEL_ROLE}={ROLE_WITNESS}", "the witness")
        result = self.kubectl("-n", ATTACKER_NS, "exec", "-i", pod["metadata"]["name"], "-c", ROLE_WITNESS, "--", *argv,
                              input=stdin, timeout=timeout, check=False)
        return ExecResult(result.returncode, result.stdout.encode(), result.stderr.encode())

    # --- faults ---------------------------------------------------------------------------------

    def faults(self) -> tuple[str, ...]:
        return ("scanner-stopped", "scanner-slow")

    @contextlib.contextmanager
    def fault(self, name: str) -> Iterator[None]:
        if name == "scanner-stopped":
            with self._scanner_stopped():
                yield
        elif name == "scanner-slow":
            with self._scanner_frozen():
                yield
        else:
            raise ValueError(f"unknown fault {name!r}")

    @contextlib.contextmanager
    def _scanner_stopped(self) -> Iterator[None]:
        ns = self.project
        self.kubectl("-n", ns, "scale", "deployment/scanner", "--replicas=0")
        try:
            self.kubectl("-n", ns, "wait", "--for=delete", "pod", "-l", f"{LABEL_ROLE}=scanner", "--timeout=120s",
                         timeout=180)
            yield
        finally:
            self.kubectl("-n", ns, "scale", "deployment/scanner", "--replicas=1")
            self.kubectl("-n", ns, "rollout", "status", "deployment/scanner", f"--timeout={WAIT}", timeout=360)

    @contextlib.contextmanager
    def _scanner_frozen(self) -> Iterator[None]:
        pod = self._role("scanner")
        node = pod["spec"]["nodeName"]
        container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[-1]
        pid = self.node_exec(node, "crictl", "inspect", "--output", "go-template", "--template", "{{.info.pid}}",
                             container_id).strip()
        if not pid.isdigit():
            raise CageError(f"cannot find the scanner's process on node {node}: crictl said {pid!r}")
        path, frozen, thawed = freezer(self.node_exec(node, "cat", f"/proc/{pid}/cgroup"))
        write = lambda value: self.node_exec(node, "sh", "-c", 'printf %s "$1" > "$2"', "sh", value, path)  # noqa: E731
        write(frozen)
        try:
            yield
        finally:
            write(thawed)
            self.kubectl("-n", self.project, "wait", "--for=condition=Ready", f"pod/{pod['metadata']['name']}",
                         "--timeout=180s", timeout=240)


class KindHostListener:
    """The red team's host listeners on kind, as one: this machine's and the node stand-ins'."""

    def __init__(self, world: KindWorld):
        self.world = world
        self.port = NODE_LISTENER_PORT
        self.local = HostListener(port=NODE_LISTENER_PORT)
        self.marks: dict[str, int] = {}

    def __enter__(self) -> KindHostListener:
        try:
            self.local.start()
        except OSError as exc:
            raise CageError(f"the red team listens on port {NODE_LISTENER_PORT} of this machine (the same port as "
                            f"on the nodes) and cannot: {exc}") from None
        try:
            self.marks = self.world.node_marks()
        except BaseException:
            self.local.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.local.stop()

    @property
    def connections(self) -> list[Connection]:
        return list(self.local.connections) + self.world.node_connections(self.marks)


def freezer(cgroup: str) -> tuple[str, str, str]:
    """(control file, frozen value, thawed value) for a process whose /proc/<pid>/cgroup is ``cgroup``:
    the v1 freezer when the process has one, else the v2 unified hierarchy's cgroup.freeze."""
    lines = [line.split(":", 2) for line in cgroup.splitlines() if line.count(":") >= 2]
    for _, controllers, path in lines:
        if "freezer" in controllers.split(","):
            return f"/sys/fs/cgroup/freezer{path}/freezer.state", "FROZEN", "THAWED"
    for hierarchy, controllers, path in lines:
        if hierarchy == "0" and controllers == "":
            return f"/sys/fs/cgroup{path}/cgroup.freeze", "1", "0"
    raise CageError(f"no freezer cgroup in {cgroup!r}")


def connections(events: Sequence[Mapping[str, Any]]) -> list[Connection]:
    """A sink capture's TCP connections (peer and bytes, in order), for the red team's host evidence."""
    seen: dict[int, tuple[str, bytearray]] = {}
    for event in events:
        if "conn" not in event or "src" not in event:
            continue
        peer, data = seen.setdefault(event["conn"], (_ip(event["src"]), bytearray()))
        for field in ("data_b64", "raw_b64"):
            if event.get(field):
                with contextlib.suppress(binascii.Error, ValueError):
                    data += base64.b64decode(event[field])
    return [Connection(peer, bytes(data)) for peer, data in seen.values()]


def _ip(endpoint: str) -> str:
    return endpoint[1:endpoint.index("]")] if endpoint.startswith("[") else endpoint.rsplit(":", 1)[0]


def _after(data: bytes, since: int) -> list[str]:
    if len(data) < since:  # restarted: its capture started over
        since = 0
    return data[since:].decode("utf-8", "replace").splitlines()
