"""Shared Docker fixtures: a run id, labels, reaping, and a running Compose cage.

Every resource a test creates carries ``yolo-cage.test=<run id>`` and is
removed when the session ends (Ryuk cannot be pulled everywhere, so it is
off). The ``compose_cage`` fixture brings up one real cage per session with
the real images, plus the attacker ``sink`` on its egress network under
paste-site names, and hands tests a :class:`CageUnderTest` to probe it.
Other suites (the red team) build on it.

The test cage differs from production in three places only, all here: its
policy allows the sink's subnet (``destinations.unsafe_allow_private_networks``),
the proxy trusts the sink's CA for upstream TLS, and its egress network has a
fixed IPv4 and IPv6 subnet so those two can be written before it starts.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cagekit import (
    HOST_GATEWAY_NAME,
    HOST_LAN_NAME,
    METADATA_IP,
    METADATA_NAME,
    SINK_NAMES,
    CageUnderTest,
    HostListener,
    Sink,
    free_subnets,
    host_addresses,
    reap,
)

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

RUN_ID = f"{time.strftime('%m%d%H%M%S')}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="session")
def test_labels(run_id: str) -> dict[str, str]:
    from kit.names import LABEL_TEST

    return {LABEL_TEST: run_id}


@pytest.fixture(scope="session")
def docker_client(run_id: str) -> Iterator[object]:
    """The engine, and at the end of the session the removal of everything this run labelled."""
    from kit.compose import docker_client as connect

    client = connect()
    try:
        yield client
    finally:
        reap(client, run_id)


@pytest.fixture(scope="session")
def host_listener() -> Iterator[HostListener]:
    """A TCP service on every address of this host (0.0.0.0 and ::), as a developer's would be."""
    listener = HostListener()
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture(scope="session")
def compose_cage(
    docker_client,
    run_id: str,
    test_labels: dict[str, str],
    host_listener: HostListener,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CageUnderTest]:
    """One real Compose cage for the session, torn down (rules, containers, networks, volumes) at the end."""
    from kit import settings as settings_mod
    from kit.compose import ComposeBackend

    workdir = tmp_path_factory.mktemp("cage")
    egress4 = free_subnets(docker_client, count=1)[0]
    egress6 = ipaddress.ip_network(f"fd7c:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}::/64")
    project = f"yct-{run_id}"
    previous = os.environ.get("YOLO_CAGE_STATE_DIR")
    os.environ["YOLO_CAGE_STATE_DIR"] = str(workdir / "state")
    sink = Sink.start(docker_client, run_id, test_labels)
    try:
        overlay = _write_overlay(workdir, egress4, egress6)
        policy = _write_policy(workdir, egress4, egress6, host_listener.port)
        settings = settings_mod.from_mapping(
            {"apiVersion": settings_mod.API_VERSION, "kind": settings_mod.KIND, "project": project},
            source="compose_cage fixture",
        )
        backend = ComposeBackend(
            settings,
            policy_file=policy,
            extra_files=[overlay],
            test_labels=test_labels,
            upstream_cas={"sink": sink.ca_pem},
            build=False,
        )
        _ensure_images(backend)
        backend.up()
        sink.join_egress(docker_client, f"{project}_egress", egress4, egress6, SINK_NAMES)
        yield CageUnderTest(
            backend=backend, client=docker_client, sink=sink, egress4=egress4, egress6=egress6,
            run_id=run_id, labels=test_labels,
        )  # fmt: skip
    finally:
        try:
            sink.remove()
        finally:
            if "backend" in locals():
                backend.down(remove_data=True)
            if previous is None:
                os.environ.pop("YOLO_CAGE_STATE_DIR", None)
            else:
                os.environ["YOLO_CAGE_STATE_DIR"] = previous


def _write_overlay(workdir: Path, egress4, egress6) -> Path:
    """The egress network gets fixed subnets (IPv4 and IPv6) the policy and the sink can name."""
    path = workdir / "compose.test.yaml"
    path.write_text(
        "# Test overlay (tests/integration/conftest.py): fixed egress subnets.\n"
        "networks:\n"
        "  egress:\n"
        "    enable_ipv6: true\n"
        "    ipam:\n"
        "      config:\n"
        f"        - subnet: {egress4}\n"
        f"        - subnet: {egress6}\n"
    )
    return path


def _write_policy(workdir: Path, egress4, egress6, listener_port: int) -> Path:
    """The default policy plus test-only loosenings: the sink's subnets are 'the internet', and
    names for the host and the metadata address (IP literals are refused before any address check)."""
    gateway = egress4.network_address + 1
    path = workdir / "policy.test.yaml"
    path.write_text(
        "apiVersion: yolo-cage.dev/v1alpha1\n"
        "kind: Policy\n"
        "destinations:\n"
        f"  ports: [80, 443, {listener_port}]\n"
        f"  unsafe_allow_private_networks: ['{egress4}', '{egress6}']\n"
        "  unsafe_host_overrides:\n"
        f"    {HOST_GATEWAY_NAME}: '{gateway}'\n"
        f"    {METADATA_NAME}: '{METADATA_IP}'\n"
        f"    {HOST_LAN_NAME}: '{host_addresses()['v4'][0]}'\n"
    )
    return path


def _ensure_images(backend) -> None:
    """`invoke test` builds the images first; a bare pytest run builds what is missing (cached)."""
    from kit import images
    from kit.compose import _has_image
    from kit.names import image_ref

    wanted = ["netguard", "scanner", "proxy", "agent", "sink"]
    missing = [n for n in wanted if not _has_image(backend.client, image_ref(n, backend.settings.images.tag))]
    if missing:
        images.build(images.options(backend.settings.images, only=",".join(missing)))
