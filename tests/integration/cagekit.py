"""Helpers behind the shared Docker fixtures (tests/integration/conftest.py).

- :class:`Sink`: the images engineer's attacker sink, first on a side network
  of its own (not a cage bridge), then on the cage's egress network under
  paste-site names, and on a network that owns the cloud metadata address.
- :class:`HostListener`: a TCP service on every address of this host.
- :class:`CageUnderTest`: what a test needs to attack the cage: run probes
  and HTTP clients in the agent, ask the sink what it received.
- :func:`probe`: TCP connects (and DNS lookups) from inside a container, all
  at once with short timeouts, reported as open / closed / no-dns / timeout.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import io
import json
import secrets
import socket
import string
import tarfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kit.backend import ExecResult
from kit.names import LABEL_ROLE, LABEL_TEST, image_ref
from tests import containers as test_containers

# Names the sink answers to on the egress network. The first is not on any
# blocklist (clean requests go there); pastebin.com is on the seed blocklist.
SINK_NAMES = ("rentry.co", "paste.rs", "pastebin.com", "sink.test")
ALLOWED_SINK = SINK_NAMES[0]
METADATA_IP = "169.254.169.254"
# Names the test policy maps to addresses (unsafe_host_overrides): the egress
# gateway (the Docker host), the metadata address, the host's LAN address.
HOST_GATEWAY_NAME = "host-gateway.test"
METADATA_NAME = "metadata.test"
HOST_LAN_NAME = "host-lan.test"
PROBE_TIMEOUT = 3.0

# Runs inside containers (python3 is in every cage image): one thread per
# target, a deadline for the whole run (a DNS lookup on an internal network
# hangs ~20 s), then os._exit so stuck lookups cannot keep it alive.
PROBE = r"""
import json, os, socket, sys, threading
targets, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
out = {}
def one(key, host, port):
    try:
        if port is None:
            out[key] = "resolved:" + ",".join(sorted({a[4][0] for a in socket.getaddrinfo(host, None)}))
            return
        family = socket.AF_INET6 if ":" in host else socket.AF_UNSPEC
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except OSError as exc:
        out[key] = "no-dns"
        return
    for fam, kind, proto, _, addr in infos:
        s = socket.socket(fam, kind, proto)
        s.settimeout(timeout)
        try:
            s.connect(addr)
            out[key] = "open"
            return
        except OSError as exc:
            out[key] = "closed:" + (exc.__class__.__name__ if exc.errno is None else str(exc.errno))
        finally:
            s.close()
threads = []
for host, port in targets:
    key = f"{host}:{port}" if port is not None else f"dns:{host}"
    t = threading.Thread(target=one, args=(key, host, port), daemon=True)
    t.start()
    threads.append((key, t))
for key, t in threads:
    t.join(timeout + 2)
for key, t in threads:
    out.setdefault(key, "timeout")
print(json.dumps(out), flush=True)
os._exit(0)
"""


def target_key(host: str, port: int | None) -> str:
    return f"{host}:{port}" if port is not None else f"dns:{host}"


def run_probe(exec_fn, targets: Sequence[tuple[str, int | None]], timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """``exec_fn(argv, timeout=...) -> ExecResult`` runs in some container; returns key -> outcome."""
    argv = ["python3", "-c", PROBE, json.dumps([list(t) for t in targets]), str(timeout)]
    result = exec_fn(argv, timeout=timeout + 30)
    if result.returncode != 0:
        raise AssertionError(f"probe failed to run (exit {result.returncode}): {result.text}")
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def canary() -> str:
    """A fresh GitHub-token-shaped secret: the scanner's provider patterns must catch it."""
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


def marker() -> str:
    """A unique, innocent string to find (or not find) in what the sink received."""
    return f"yc-marker-{secrets.token_hex(8)}"


# --- the sink --------------------------------------------------------------------------


@dataclass
class Sink:
    container: Any
    side_network: Any
    ca_pem: bytes
    ip4: str = ""
    ip6: str = ""
    names: tuple[str, ...] = SINK_NAMES

    @classmethod
    def start(cls, client, run_id: str, labels: dict[str, str]) -> Sink:
        return cls.launch(client, f"yct-{run_id}-side", image_ref("sink"), name=f"yct-{run_id}-sink",
                          labels={**labels, LABEL_ROLE: "sink"}, ready_log="yolo-cage sink ready",
                          ca_path="/capture/sink-ca.crt", cap_add=["NET_BIND_SERVICE", "NET_RAW"])

    @classmethod
    def launch(cls, client, side_name: str, image: str, *, labels: dict[str, str], ca_path: str, **run: Any) -> Any:
        """A hardened test container (tests/containers.py) on a side network of its own; on failure
        neither is left behind."""
        side = client.networks.create(side_name, driver="bridge", labels={k: v for k, v in labels.items() if k != LABEL_ROLE})
        try:
            container = test_containers.run(image, labels=labels, network=side.name, cap_drop=["ALL"],
                                            security_opt=["no-new-privileges:true"], **run)
        except BaseException:
            side.remove()
            raise
        made = cls(container=container, side_network=side, ca_pem=b"")
        made.ca_pem = made.read(ca_path)
        return made

    def join_egress(self, client, network: str, egress4, egress6, names: Iterable[str]) -> None:
        """Join the cage's egress network at fixed addresses, under paste-site names."""
        self.ip4 = str(egress4.network_address + 200)
        self.ip6 = str(egress6.network_address + 0x200)
        client.networks.get(network).connect(
            self.container, ipv4_address=self.ip4, ipv6_address=self.ip6, aliases=list(names)
        )

    @contextlib.contextmanager
    def owning_metadata(self, client, run_id: str, labels: dict[str, str]) -> Iterator[None]:
        """For the block's duration the sink owns the cloud metadata address, on a network of its own:
        this host can reach it, agents must not. Another test world may own it already (one subnet
        per engine): then that world's sink answers, and the host-side control still decides."""
        from docker.errors import APIError

        meta = ipaddress.ip_network("169.254.169.0/24")
        try:
            network = client.networks.create(f"yct-{run_id}-meta", driver="bridge", ipam=_ipam(meta), labels=dict(labels))
        except APIError:
            network = None
        try:
            if network is not None:
                network.connect(self.container, ipv4_address=METADATA_IP)
            yield
        finally:
            if network is not None:
                network.disconnect(self.container, force=True)
                network.remove()

    def read(self, path: str) -> bytes:
        stream, _ = self.container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            data = tar.extractfile(member) if member else None
            return data.read() if data else b""

    def events(self) -> list[dict[str, Any]]:
        raw = self.read("/capture/events.jsonl").decode("utf-8", "replace")
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def saw(self, needle: str) -> bool:
        """Did any byte the sink received contain ``needle`` (raw, or in base64-stored fields)?"""
        return any(needle.encode() in blob for event in self.events() for blob in _blobs(event))

    def exec(self, argv: Sequence[str], timeout: float | None = None) -> ExecResult:
        code, out = self.container.exec_run(list(argv), demux=True)
        stdout, stderr = out if isinstance(out, tuple) else (out, b"")
        return ExecResult(code, stdout or b"", stderr or b"")

    def remove(self) -> None:
        try:
            self.container.remove(force=True, v=True)  # the sink image declares VOLUME /capture
        finally:
            self.side_network.remove()


def _blobs(value: Any) -> Iterable[bytes]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("_b64") and isinstance(item, str):
                yield base64.b64decode(item)
            else:
                yield from _blobs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _blobs(item)
    elif isinstance(value, str):
        yield value.encode()


def _ipam(subnet) -> Any:
    import docker.types

    pool = docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet.network_address + 1))
    return docker.types.IPAMConfig(pool_configs=[pool])


# --- the host ----------------------------------------------------------------------------


class HostListener:
    """Accepts TCP connections on one port on 0.0.0.0 and :: and remembers who connected."""

    def __init__(self) -> None:
        self.v4 = socket.create_server(("0.0.0.0", 0))
        self.port = self.v4.getsockname()[1]
        self.v6: socket.socket | None = None
        if socket.has_ipv6:
            try:
                self.v6 = socket.create_server(("::", self.port), family=socket.AF_INET6, dualstack_ipv6=False)
            except OSError:
                self.v6 = None
        self.peers: list[str] = []
        self._stop = False
        for sock in (self.v4, self.v6):
            if sock is not None:
                threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(0.5)
        while not self._stop:
            try:
                conn, peer = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.peers.append(peer[0])
            conn.close()

    def close(self) -> None:
        self._stop = True
        for sock in (self.v4, self.v6):
            if sock is not None:
                sock.close()


def host_addresses() -> dict[str, list[str]]:
    """This host's own addresses (global scope), by family, read from the kernel."""
    v4, v6 = [], []
    with open("/proc/net/if_inet6") if _exists("/proc/net/if_inet6") else io.StringIO() as f:
        for line in f:
            hexaddr, _, _, scope, _, _ = line.split()
            if scope == "00":  # global
                v6.append(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    for name, addr in _ipv4_by_interface():
        if not addr.startswith("127."):
            v4.append(addr)
    return {"v4": sorted(set(v4)), "v6": sorted(set(v6))}


def _exists(path: str) -> bool:
    try:
        open(path).close()
        return True
    except OSError:
        return False


def _ipv4_by_interface() -> list[tuple[str, str]]:
    import fcntl
    import struct

    out = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
            except OSError:
                continue
            out.append((name, socket.inet_ntoa(packed[20:24])))
    return out


def connect_from_host(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            return "open"
        except OSError as exc:
            return f"closed:{exc.errno}"


def free_subnets(client, count: int) -> list[ipaddress.IPv4Network]:
    """``count`` /24s in 10.213.0.0/16 that no Docker network uses yet."""
    used = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                used.append(ipaddress.ip_network(cfg["Subnet"]))
    pool = list(ipaddress.ip_network("10.213.0.0/16").subnets(new_prefix=24))
    start = secrets.randbelow(len(pool))
    out = []
    for candidate in pool[start:] + pool[:start]:
        if not any(candidate.overlaps(u) for u in used):
            out.append(candidate)
            if len(out) == count:
                return out
    raise RuntimeError("no free /24 left in 10.213.0.0/16")


def reap(client, run_id: str) -> None:
    """Remove every container, network and volume labelled with this run id (ours only)."""
    label = {"label": f"{LABEL_TEST}={run_id}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True, v=True)
    for network in client.networks.list(filters=label):
        network.reload()
        for attached in (network.attrs.get("Containers") or {}):
            try:
                network.disconnect(attached, force=True)
            except Exception:  # noqa: BLE001 - best effort, the removal below reports
                pass
        network.remove()
    for volume in client.volumes.list(filters=label):
        volume.remove(force=True)


# --- the cage under test ---------------------------------------------------------------------


@dataclass
class CageUnderTest:
    backend: Any  # kit.compose.ComposeBackend
    client: Any
    sink: Sink
    egress4: ipaddress.IPv4Network
    egress6: ipaddress.IPv6Network
    run_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    agent: str = "dev"

    @property
    def project(self) -> str:
        return self.backend.project

    def agent_exec(self, argv: Sequence[str], *, timeout: float = 60, env: dict[str, str] | None = None,
                   stdin: bytes | None = None) -> ExecResult:  # fmt: skip
        return self.backend.exec(self.agent, list(argv), env=env, stdin=stdin, timeout=timeout)

    def role_exec(self, role: str, argv: Sequence[str], *, timeout: float = 60) -> ExecResult:
        container = self.backend.container_for(role)
        code, out = container.exec_run(list(argv), demux=True)
        stdout, stderr = out if isinstance(out, tuple) else (out, b"")
        return ExecResult(code, stdout or b"", stderr or b"")

    def probe_from_agent(self, targets: Sequence[tuple[str, int | None]]) -> dict[str, str]:
        return run_probe(lambda argv, timeout: self.agent_exec(argv, timeout=timeout), targets)

    def probe_from(self, role: str, targets: Sequence[tuple[str, int | None]]) -> dict[str, str]:
        return run_probe(lambda argv, timeout: self.role_exec(role, argv, timeout=timeout), targets)

    def owning_metadata(self):
        return self.sink.owning_metadata(self.client, self.run_id, self.labels)

    def sink_probe(self, targets: Sequence[tuple[str, int | None]]) -> dict[str, str]:
        """Probes from the sink: an ordinary container, on a plain bridge as well as on egress."""
        return run_probe(lambda argv, timeout: self.sink.exec(argv, timeout=timeout), targets)

    def network(self, key: str):
        return self.client.networks.get(f"{self.project}_{key}")

    def gateway(self, key: str) -> str:
        return self.gateway_of(self.network(key))

    @staticmethod
    def gateway_of(network) -> str:
        network.reload()
        configs = network.attrs["IPAM"]["Config"]
        v4 = next(c for c in configs if ":" not in c.get("Subnet", ":"))
        # Docker reports the gateway only when it chose the subnet; otherwise it is the first address.
        return v4.get("Gateway") or str(ipaddress.ip_network(v4["Subnet"]).network_address + 1)

    def address_of(self, role: str, network_key: str) -> str:
        container = self.backend.container_for(role)
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][f"{self.project}_{network_key}"]["IPAddress"]
