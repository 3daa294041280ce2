"""The red team's view of a Compose cage, through the Docker SDK.

Parts are found by label (``yolo-cage.role``, ``yolo-cage.agent``) within the
Compose project, addresses from the engine's network settings. The sink is
the test-only container labelled ``yolo-cage.role=sink``; its capture file is
read with the archive API (no shell needed in the sink). Faults act on the
scanner container: stopped (``docker stop``), or frozen (``docker pause``:
the proxy's scan request hangs until its deadline).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import socket
import tarfile
import time
from collections.abc import Iterator

from kit.backend import Backend
from kit.errors import BackendError
from kit.names import LABEL_AGENT, LABEL_PROJECT, LABEL_ROLE, PROXY_PORT
from kit.redteam.targets import Targets
from kit.redteam.world import World

PROJECT_LABEL = "com.docker.compose.project"
# Cloud metadata addresses a test world may own (kit/redteam/testcage.py puts the sink there).
METADATA_ADDRESSES = ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
CAPTURE = "/capture/events.jsonl"
READY_TIMEOUT = 120.0


class ComposeWorld(World):
    def __init__(self, backend: Backend, *, client=None, project: str | None = None, allow_offhost: bool = False):
        self.backend = backend
        self.client = client or getattr(backend, "client")
        self.project = project or getattr(backend, "project")
        self.allow_offhost = allow_offhost

    # --- finding parts -------------------------------------------------------------------

    def _containers(self, role: str, agent: str | None = None) -> list:
        # Cage parts belong to the Compose project; the test-only sink is started
        # beside it and carries the kit's project label instead.
        project = f"{LABEL_PROJECT}={self.project}" if role == "sink" else f"{PROJECT_LABEL}={self.project}"
        labels = [project, f"{LABEL_ROLE}={role}"]
        if agent:
            labels.append(f"{LABEL_AGENT}={agent}")
        return self.client.containers.list(all=True, filters={"label": labels})

    def container(self, role: str, agent: str | None = None):
        found = self._containers(role, agent)
        if not found:
            who = f"agent {agent!r}" if agent else f"the {role}"
            raise BackendError(f"no container for {who} in Compose project {self.project!r}"
                               + (" (the red team needs the test overlay's sink)" if role == "sink" else ""))
        return found[0]

    def agent_names(self) -> list[str]:
        return sorted(c.labels.get(LABEL_AGENT, "") for c in self._containers("agent") if c.status == "running")

    @staticmethod
    def networks(container) -> dict[str, dict]:
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"] or {}

    # --- targets -----------------------------------------------------------------------------

    def targets(self, agent: str, host_port: int | None) -> Targets:
        agent_nets = self.networks(self.container("agent", agent))
        proxy, sink = self.container("proxy"), self.container("sink")
        proxy_nets, sink_nets = self.networks(proxy), self.networks(sink)
        shared = [n for n in agent_nets if n in proxy_nets]
        if not shared:
            raise BackendError(f"agent {agent!r} shares no network with the proxy")
        egress = [n for n in sink_nets if n in proxy_nets]
        if not egress:
            raise BackendError("the sink shares no network with the proxy: it cannot play the internet")
        others = [a for a in self.agent_names() if a != agent]
        other_ip = None
        if others:
            other_nets = self.networks(self.container("agent", others[0]))
            other_ip = next(iter(other_nets.values()))["IPAddress"]
        scanner_ip = self._scanner_ip()
        return Targets(
            agent=agent,
            proxy_host="proxy",
            proxy_ip=proxy_nets[shared[0]]["IPAddress"],
            proxy_port=PROXY_PORT,
            sink_ip=sink_nets[egress[0]]["IPAddress"],
            sink_name=sink.name,
            scanner_ip=scanner_ip,
            other_agent=others[0] if others else None,
            other_agent_ip=other_ip,
            gateway_ip=agent_nets[shared[0]].get("Gateway") or self._gateway(shared[0]),
            host_ips=tuple(self._host_addresses()),
            host_port=host_port,
            proxy_egress_ip=proxy_nets[egress[0]]["IPAddress"],
            offhost_ok=self.allow_offhost or self._internal(egress[0]),
            local_addresses=frozenset(self._local(METADATA_ADDRESSES)),
        )

    def _local(self, addresses) -> list[str]:
        """Which of ``addresses`` fall inside a network of this engine (so a packet to them stays here)."""
        subnets = [ipaddress.ip_network(c["Subnet"]) for net in self.client.networks.list()
                   for c in (net.attrs.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")]
        return [a for a in addresses if any(ipaddress.ip_address(a) in s for s in subnets
                                            if s.version == ipaddress.ip_address(a).version)]

    def _scanner_ip(self) -> str | None:
        found = self._containers("scanner")
        if not found:
            return None
        nets = self.networks(found[0])
        return next(iter(nets.values()))["IPAddress"] if nets else None

    def _gateway(self, network_name: str) -> str | None:
        configs = (self.client.networks.get(network_name).attrs.get("IPAM") or {}).get("Config") or []
        return next((c["Gateway"] for c in configs if c.get("Gateway")), None)

    def _internal(self, network_name: str) -> bool:
        return bool(self.client.networks.get(network_name).attrs.get("Internal"))

    def _host_addresses(self) -> list[str]:
        """docker0's address and the host's own primary address (no packet is sent to learn it)."""
        out = []
        bridge = self._gateway("bridge") if self._has_network("bridge") else None
        if bridge:
            out.append(bridge)
        own = own_address()
        if own and own not in out:
            out.append(own)
        return out

    def _has_network(self, name: str) -> bool:
        return bool(self.client.networks.list(names=[name]))

    def allowed_sources(self) -> set[str]:
        nets = self.networks(self.container("proxy"))
        return {n["IPAddress"] for n in nets.values() if n.get("IPAddress")}

    def host_listener_ok(self) -> bool:
        return True

    # --- the sink's capture ---------------------------------------------------------------------

    def _capture_bytes(self) -> bytes:
        return read_file(self.container("sink"), CAPTURE)

    def sink_mark(self) -> int:
        return len(self._capture_bytes())

    def sink_lines(self, since: int) -> list[str]:
        data = self._capture_bytes()
        if len(data) < since:  # the sink restarted: its capture started over
            since = 0
        return data[since:].decode("utf-8", "replace").splitlines()

    # --- faults -----------------------------------------------------------------------------

    def faults(self) -> tuple[str, ...]:
        return ("scanner-stopped", "scanner-slow")

    @contextlib.contextmanager
    def fault(self, name: str) -> Iterator[None]:
        scanner = self.container("scanner")
        if name == "scanner-stopped":
            scanner.stop(timeout=5)
            try:
                yield
            finally:
                scanner.start()
                self.wait_healthy(scanner)
        elif name == "scanner-slow":
            scanner.pause()
            try:
                yield
            finally:
                scanner.unpause()
                self.wait_healthy(scanner)
        else:
            raise ValueError(f"unknown fault {name!r}")

    def wait_healthy(self, container, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            container.reload()
            health = (container.attrs.get("State") or {}).get("Health") or {}
            if container.status == "running" and health.get("Status", "healthy") == "healthy":
                return
            time.sleep(0.5)
        raise BackendError(f"{container.name} did not become healthy again within {timeout:.0f}s after the fault")


def own_address() -> str | None:
    """This machine's primary IPv4 address (no packet is sent to learn it), or None."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("198.51.100.1", 9))  # TEST-NET-2: a UDP connect picks a route, sends nothing
        own = probe.getsockname()[0]
        return None if ipaddress.ip_address(own).is_loopback else own
    return None


def read_file(container, path: str) -> bytes:
    """A file from a container through the archive API (no shell needed in it)."""
    try:
        stream, _ = container.get_archive(path)
    except Exception as exc:  # noqa: BLE001 - docker.errors.NotFound and friends
        raise BackendError(f"cannot read {path} from {container.name}: {exc}") from exc
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.next()
        handle = archive.extractfile(member) if member else None
        return handle.read() if handle else b""
