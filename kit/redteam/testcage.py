"""The attacker's world around a Compose cage, for the red team (TEST ONLY, never a product cage).

A cage brought up here differs from a user's in exactly these ways:

- the attacker ``sink`` container sits on the cage's egress network, under
  paste-site and arbitrary names, at a fixed address;
- the proxy's resolver is the sink (``dns:`` in the overlay), and the sink
  answers every name with its own address and is the authoritative server of
  ``exfil.attacker.test``: a name the proxy resolves shows up in the sink's
  DNS log, and no query ever reaches the host's real resolver;
- the egress network is internal: whatever the proxy lets through can only
  reach the sink (a metadata or other off-host address has no route), so the
  whole catalog runs without any packet leaving this machine;
- the policy allows the sink's subnet (``destinations.unsafe_allow_private_networks``)
  and the proxy trusts the sink's CA for upstream TLS;
- two agents, so "another agent" is a real target.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit import console, state
from kit.errors import CageError
from kit.names import LABEL_ROLE, LABEL_TEST, image_ref

SINK_ALIASES = (
    # The seed blocklist, and names like it that are not on it.
    "pastebin.com", "www.pastebin.com", "paste.ee", "hastebin.com", "dpaste.org", "file.io", "transfer.sh",
    "0x0.st", "ix.io", "sprunge.us", "termbin.com", "rentry.co", "paste.rs", "ghostbin.example",
    # Arbitrary attacker names.
    "collect.attacker.test", "git.attacker.test", "dns.attacker.test", "exfil.attacker.test", "telemetry-cdn.example",
)
AGENTS = ("dev", "peer")
SINK_HOST = 200  # the sink's address within the egress subnet
READY_TIMEOUT = 60.0
IMAGES = ("netguard", "scanner", "proxy", "agent", "sink")  # built first when missing
CLAUDE_IMAGES = (*IMAGES, "model")  # the Claude Code scenarios' scripted model too
# (docker client, image, **containers.run keyword arguments) -> a started docker container
ContainerRunner = Callable[..., Any]


@dataclass
class TestCage:
    backend: object  # kit.compose.ComposeBackend
    client: object
    run_id: str
    sink: object  # the docker container
    side_network: object
    egress4: ipaddress.IPv4Network
    egress6: ipaddress.IPv6Network
    labels: dict[str, str] = field(default_factory=dict)
    metadata_networks: list = field(default_factory=list)
    workdir: Path | None = None

    def reconfigure(self, policy_text: str) -> None:
        """Bring the cage up again with another policy (the proxy is recreated; the sink stays)."""
        from kit.compose import ComposeBackend

        if self.workdir is None:
            raise CageError("this red-team cage was found running, not started here: it cannot be reconfigured")
        policy = self.workdir / "policy.reconfigured.yaml"
        policy.write_text(policy_text, encoding="utf-8")
        old = self.backend
        self.backend = ComposeBackend(old.settings, policy_file=policy, extra_files=old.extra_files,  # type: ignore[attr-defined]
                                      test_labels=old.test_labels, upstream_cas=old.upstream_cas, build=False)  # type: ignore[attr-defined]
        self.backend.up()  # type: ignore[attr-defined]

    def policy_text(self) -> str:
        if self.workdir is None:
            raise CageError("unknown policy: this red-team cage was found running")
        return (self.workdir / "policy.redteam.yaml").read_text(encoding="utf-8")

    @property
    def sink_ip(self) -> str:
        return str(self.egress4.network_address + SINK_HOST)

    def stop(self) -> None:
        """Remove the cage (containers, networks, volumes, host rules), the sink, and the cage's state
        directory: its CA key, the fake bound key and the model's TLS files belong to this run only."""
        try:
            self.backend.down(remove_data=True)  # type: ignore[attr-defined]
        finally:
            _remove_quietly(self.sink)
            for network in [self.side_network, *self.metadata_networks]:
                if network is not None:
                    _remove_quietly(network)
            _remove_state(self.backend.project)  # type: ignore[attr-defined]


def start(project: str, *, run_id: str | None = None, agents: tuple[str, ...] = AGENTS, build: bool = True,
          run_container: ContainerRunner | None = None, images: tuple[str, ...] = IMAGES) -> TestCage:
    """Bring up a red-team cage named ``project``; on failure nothing is left behind.

    ``run_container(client, image, **kwargs)`` starts the sink (default: the Docker
    SDK's ``containers.run``; the pytest suite passes testcontainers' runner).
    """
    from kit.compose import ComposeBackend, docker_client

    client = docker_client()
    run_id = run_id or f"rt{time.strftime('%m%d%H%M%S')}{secrets.token_hex(2)}"
    labels = {LABEL_TEST: run_id}
    egress4 = free_subnet(client)
    egress6 = ipaddress.ip_network(f"fd7d:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}::/64")
    sink_ip = str(egress4.network_address + SINK_HOST)
    workdir = state.project_dir(project) / "redteam"
    workdir.mkdir(parents=True, exist_ok=True)
    settings = _settings(project, agents)
    if build:
        _ensure_images(client, settings, images)
    sink, side = _start_sink(client, project, labels, sink_ip, settings.images.tag, run_container or _sdk_run)
    backend = None
    try:
        ca_pem = _wait_ready(sink)
        backend = ComposeBackend(settings, policy_file=write_policy(workdir, egress4, egress6),
                                 extra_files=[write_overlay(workdir, egress4, egress6, sink_ip)],
                                 test_labels={**labels, "yolo-cage.redteam": "1"}, upstream_cas={"sink": ca_pem},
                                 build=False)
        backend.up()
        client.networks.get(f"{project}_egress").connect(
            sink, ipv4_address=sink_ip, ipv6_address=str(egress6.network_address + 0x200), aliases=list(SINK_ALIASES))
        metadata = _own_metadata(client, project, sink, labels)
    except BaseException:
        if backend is not None:
            backend.down(remove_data=True)
        _remove_quietly(sink)
        _remove_quietly(side)
        raise
    return TestCage(backend, client, run_id, sink, side, egress4, egress6, labels, metadata, workdir)


def find(project: str) -> TestCage | None:
    """The red-team cage ``project`` if it is running (its proxy and its sink), else None."""
    from kit.compose import ComposeBackend, docker_client

    client = docker_client()
    sinks = client.containers.list(filters={"label": [f"{LABEL_ROLE}=sink", f"yolo-cage.project={project}"]})
    proxies = client.containers.list(filters={"label": [f"{LABEL_ROLE}=proxy", f"com.docker.compose.project={project}"]})
    if not sinks or not proxies:
        return None
    sink = sinks[0]
    egress = client.networks.get(f"{project}_egress")
    subnets = [ipaddress.ip_network(c["Subnet"]) for c in egress.attrs["IPAM"]["Config"]]
    labels = {LABEL_TEST: sink.labels.get(LABEL_TEST, "")}
    backend = ComposeBackend(_settings(project, AGENTS), test_labels={**labels, "yolo-cage.redteam": "1"}, build=False)
    networks = client.networks.list(names=[f"{project}-sink-side", *(f"{project}-{m[0]}" for m in METADATA_NETWORKS)])
    side = next((n for n in networks if n.name.endswith("-sink-side")), None)
    return TestCage(backend, client, labels[LABEL_TEST], sink, side,
                    next(n for n in subnets if n.version == 4), next(n for n in subnets if n.version == 6), labels,
                    [n for n in networks if n is not side])


def _settings(project: str, agents: tuple[str, ...]):
    from kit import settings as settings_mod

    return settings_mod.from_mapping(
        {"apiVersion": settings_mod.API_VERSION, "kind": settings_mod.KIND, "project": project,
         "agents": [{"name": a} for a in agents]},
        source="red-team test cage",
    )


def write_overlay(workdir: Path, egress4, egress6, sink_ip: str) -> Path:
    path = workdir / "compose.redteam.yaml"
    path.write_text(
        "# Red-team overlay (kit/redteam/testcage.py): TEST ONLY.\n"
        "services:\n"
        "  proxy:\n"
        "    # Every name the proxy resolves is asked of the attacker's sink, never the host's resolver.\n"
        f"    dns: [{sink_ip}]\n"
        "networks:\n"
        "  egress:\n"
        "    # Whatever the proxy lets through can reach only the sink: nothing leaves this machine.\n"
        "    internal: true\n"
        "    enable_ipv6: true\n"
        "    ipam:\n"
        "      config:\n"
        f"        - subnet: {egress4}\n"
        f"        - subnet: {egress6}\n",
        encoding="utf-8",
    )
    return path


def write_policy(workdir: Path, egress4, egress6) -> Path:
    """The default policy plus the one test-only loosening: the sink's subnet counts as the internet."""
    path = workdir / "policy.redteam.yaml"
    path.write_text(
        "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"
        f"destinations:\n  unsafe_allow_private_networks: ['{egress4}', '{egress6}']\n",
        encoding="utf-8",
    )
    return path


def free_subnet(client) -> ipaddress.IPv4Network:
    """A /24 in 10.214.0.0/16 that no Docker network uses."""
    used = [ipaddress.ip_network(c["Subnet"]) for net in client.networks.list()
            for c in (net.attrs.get("IPAM") or {}).get("Config") or [] if c.get("Subnet") and ":" not in c["Subnet"]]
    pool = list(ipaddress.ip_network("10.214.0.0/16").subnets(new_prefix=24))
    start = secrets.randbelow(len(pool))
    for candidate in pool[start:] + pool[:start]:
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise CageError("no free /24 left in 10.214.0.0/16 for the red team's egress network")


def _sdk_run(client, image: str, **kwargs):
    return client.containers.run(image, detach=True, **kwargs)


def _start_sink(client, project: str, labels: dict[str, str], sink_ip: str, tag: str, run_container: ContainerRunner):
    side = client.networks.create(f"{project}-sink-side", driver="bridge", internal=True, labels=dict(labels))
    try:
        sink = run_container(
            client, image_ref("sink", tag), name=f"{project}-sink", network=side.name,
            environment={"SINK_DNS_ANSWER": sink_ip},
            cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE", "NET_RAW"], security_opt=["no-new-privileges:true"],
            labels={**labels, LABEL_ROLE: "sink", "yolo-cage.project": project},
        )
    except BaseException:
        _remove_quietly(side)
        raise
    return sink, side


# The sink takes the cloud metadata addresses on networks of their own, so an
# attack aimed there stays on this machine (and is seen) if the cage lets it go.
METADATA_NETWORKS = (
    ("meta", "169.254.169.0/24", "169.254.169.254", "fd00:ec2::/64", "fd00:ec2::254"),
    ("meta-alibaba", "100.100.100.0/24", "100.100.100.200", None, None),
)


def _own_metadata(client, project: str, sink, labels: dict[str, str]) -> list:
    import docker.types
    from docker.errors import APIError

    created = []
    for suffix, subnet4, ip4, subnet6, ip6 in METADATA_NETWORKS:
        pools = [docker.types.IPAMPool(subnet=subnet4)] + ([docker.types.IPAMPool(subnet=subnet6)] if subnet6 else [])
        try:
            network = client.networks.create(f"{project}-{suffix}", driver="bridge", enable_ipv6=bool(subnet6),
                                             ipam=docker.types.IPAMConfig(pool_configs=pools), labels=dict(labels))
        except APIError as exc:
            # Another test world on this engine owns it already: the address is still local.
            console.warn(f"the red team's sink cannot take {ip4} ({exc.explanation}); probes to it are judged "
                         "by the agent's side only")
            continue
        created.append(network)
        network.connect(sink, ipv4_address=ip4, **({"ipv6_address": ip6} if ip6 else {}))
    return created


def _wait_ready(sink) -> bytes:
    from kit.redteam.compose_world import read_file

    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        sink.reload()
        if sink.status == "exited":
            raise CageError(f"the sink exited: {sink.logs().decode(errors='replace')[-800:]}")
        if b"yolo-cage sink ready" in sink.logs():
            return read_file(sink, "/capture/sink-ca.crt")
        time.sleep(0.3)
    raise CageError(f"the sink did not become ready: {sink.logs().decode(errors='replace')[-800:]}")


def _ensure_images(client, settings, wanted: tuple[str, ...]) -> None:
    from kit import images
    from kit.compose import _has_image

    missing = [n for n in wanted if not _has_image(client, image_ref(n, settings.images.tag))]
    if missing:
        console.info(f"building the images the red team needs: {', '.join(missing)}")
        images.build(images.options(settings.images, only=",".join(missing)))


def _remove_state(project: str) -> None:
    import shutil

    path = state.project_dir(project, create=False)
    if path.exists():
        shutil.rmtree(path, onexc=lambda _f, p, exc: console.warn(f"could not remove {p}: {exc}"))


def _remove_quietly(thing) -> None:
    from docker.models.containers import Container

    try:
        if isinstance(thing, Container):
            thing.remove(force=True, v=True)  # and its anonymous volumes (the sink's /capture)
        else:
            thing.remove()
    except Exception as exc:  # noqa: BLE001 - teardown goes on; the test run's reaper catches leftovers
        console.warn(f"could not remove {getattr(thing, 'name', thing)}: {exc}")
