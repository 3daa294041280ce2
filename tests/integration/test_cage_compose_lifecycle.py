"""`invoke up` / `invoke down` on a real engine: idempotent, clean on failure, nothing left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kit import settings as settings_mod
from kit.compose import ComposeBackend, netguard_script
from kit.errors import CageError, StepError
from kit.hostguard import bridge_prefix
from kit.names import image_ref

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def run_tag(docker_client, run_id: str) -> Iterator[str]:
    """This run's own tag on the cage images: a rebuild by someone else meanwhile cannot change them."""
    tag = f"yct-{run_id}"
    for name in ("netguard", "scanner", "proxy", "agent"):
        docker_client.images.get(image_ref(name)).tag(f"yolo-cage/{name}", tag)
    yield tag
    for name in ("netguard", "scanner", "proxy", "agent"):
        docker_client.images.remove(image_ref(name, tag))  # only this tag; the image stays


@pytest.fixture
def make_backend(
    docker_client, run_id: str, run_tag: str, test_labels: dict[str, str], tmp_path: Path, monkeypatch
) -> Iterator:
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))
    made: list[ComposeBackend] = []

    def make(suffix: str, **fields) -> ComposeBackend:
        data = {
            "apiVersion": settings_mod.API_VERSION,
            "kind": settings_mod.KIND,
            "project": f"yct-{run_id}-{suffix}",
            "images": {"tag": run_tag},
        }
        settings = settings_mod.from_mapping({**data, **fields}, source="test", base_dir=tmp_path)
        backend = ComposeBackend(settings, test_labels=test_labels, build=False, client=docker_client)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.down(remove_data=True)


def leftovers(client, project: str) -> dict[str, list[str]]:
    label = {"label": f"com.docker.compose.project={project}"}
    return {
        "containers": sorted(c.name for c in client.containers.list(all=True, filters=label)),
        "networks": sorted(n.name for n in client.networks.list(filters=label)),
        "volumes": sorted(v.name for v in client.volumes.list(filters=label)),
    }


def netguard_rules_in_place(client, project: str, labels: dict[str, str]) -> bool:
    """netguard's own `check`, run beside the cage: True only if every rule is installed."""
    container = client.containers.run(
        image_ref("netguard"),  # the program is compose.yaml's, the image only brings iptables
        entrypoint=["/bin/sh", "-c", netguard_script(), "netguard", "check"],
        command=[], network_mode="host", user="0:0", cap_drop=["ALL"], cap_add=["NET_ADMIN", "NET_RAW"],
        environment={"YOLO_CAGE_BRIDGE_PREFIX": bridge_prefix(project)}, labels=labels, detach=True,
    )  # fmt: skip
    try:
        return container.wait(timeout=60)["StatusCode"] == 0
    finally:
        container.remove(force=True)


def test_up_twice_changes_nothing_and_down_keeps_only_the_data_volumes(
    make_backend, docker_client, test_labels: dict[str, str]
) -> None:
    backend = make_backend("life")
    project = backend.project
    assert not netguard_rules_in_place(docker_client, project, test_labels)
    backend.up()
    first = {c.name: c.id for c in backend._containers(all_states=True)}
    assert len(first) == 4 and all(c.healthy for c in backend.status().components)
    assert netguard_rules_in_place(docker_client, project, test_labels)

    backend.up()  # idempotent: the same containers, not new ones
    assert {c.name: c.id for c in backend._containers(all_states=True)} == first

    kept = backend.down()
    data = sorted(f"{project}_{key}" for key in ("audit", "home", "workspace"))
    assert kept == data
    assert leftovers(docker_client, project) == {"containers": [], "networks": [], "volumes": data}
    assert not netguard_rules_in_place(docker_client, project, test_labels)

    assert backend.down(remove_data=True) == []
    assert leftovers(docker_client, project) == {"containers": [], "networks": [], "volumes": []}


def test_a_bad_policy_stops_up_before_anything_exists(make_backend, docker_client, tmp_path: Path) -> None:
    (tmp_path / "bad-policy.yaml").write_text(
        "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\ndestinations: {mode: sometimes, bogus: 1}\n"
    )
    backend = make_backend("badpolicy", policy="bad-policy.yaml")
    with pytest.raises(StepError) as info:
        backend.up()
    assert info.value.step == "check the policy"
    assert "destinations.mode" in str(info.value) and "bogus" in str(info.value)
    assert leftovers(docker_client, backend.project) == {"containers": [], "networks": [], "volumes": []}


def test_a_failed_step_removes_what_this_up_built(make_backend, docker_client, monkeypatch) -> None:
    backend = make_backend("halfbuilt")

    def broken_start(ctx) -> None:
        # By now networks, volumes and containers exist: the failure must take them away.
        assert leftovers(docker_client, backend.project)["containers"]
        raise CageError("simulated failure while starting")

    monkeypatch.setattr(backend, "_start", broken_start)
    with pytest.raises(StepError, match="simulated failure") as info:
        backend.up()
    assert info.value.cleaned_up
    assert leftovers(docker_client, backend.project) == {"containers": [], "networks": [], "volumes": []}
