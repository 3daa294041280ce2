"""kit.settings: strict, versioned, every problem at once, defaults in one place."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kit import settings
from kit.errors import ConfigError

HEADER = "apiVersion: yolo-cage.dev/v1alpha1\nkind: Settings\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "yolo-cage.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings.load(write(tmp_path, text))
    return info.value.problems


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YOLO_CAGE_SETTINGS", raising=False)
    monkeypatch.delenv("YOLO_CAGE_PROJECT", raising=False)


def test_header_only_gives_every_default(tmp_path: Path) -> None:
    s = settings.load(write(tmp_path, HEADER))
    assert s.backend == "compose"
    assert s.project == "yolo-cage"
    assert s.agent_names == ["dev"]
    assert s.agents[0].git_branch == "yolo-cage/dev"
    assert s.backends.compose.host_isolation == "auto"
    assert s.unsafe_allow_host_access is False
    assert s.unsafe_switches() == []


def test_missing_default_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert settings.load().project == "yolo-cage"


def test_named_file_that_does_not_exist_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CAGE_SETTINGS", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        settings.load()


def test_every_problem_is_reported_at_once_with_location_and_value(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
apiVersion: yolo-cage.dev/v9
kind: Setting
backend: podman
bogus: 1
agents:
  - {name: Dev, resources: {memory: 4gb, pids: 10, extra: x}}
  - {name: ok}
  - {name: ok}
backends:
  kind: {node_image: "kindest/node:latest"}
  compose: {host_isolation: maybe}
policy: nope.yaml
unsafe_allow_host_access: "yes"
""",
    )
    text = "\n".join(found)
    for expected in (
        "apiVersion: must be 'yolo-cage.dev/v1alpha1' (got 'yolo-cage.dev/v9')",
        "kind: must be 'Settings' (got 'Setting')",
        "backend:",
        "'podman'",
        "bogus: unknown key (value 1)",
        "agents.0.name: a lowercase DNS label",
        "(got 'Dev')",
        "agents.0.resources.memory:",
        "agents.0.resources.pids:",
        "agents.0.resources.extra: unknown key",
        "backends.kind.node_image: an image pinned by tag and digest",
        "backends.compose.host_isolation:",
        "agents: names must be unique (repeated: ok)",
        "policy: no such file (got 'nope.yaml')",
        "unsafe_allow_host_access:",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert len(found) == 13  # one line per problem, nothing repeated


def test_yaml_errors_say_where(tmp_path: Path) -> None:
    found = problems(tmp_path, HEADER + "agents: [\n")
    assert len(found) == 1 and "not valid YAML" in found[0] and "line" in found[0]


def test_document_must_be_a_mapping(tmp_path: Path) -> None:
    assert "must be a mapping" in problems(tmp_path, "- a\n- b\n")[0]


def test_strings_are_not_coerced(tmp_path: Path) -> None:
    found = problems(tmp_path, HEADER + "agents: [{name: a, resources: {pids: '2048'}}]\n")
    assert found == [found[0]] and found[0].startswith("agents.0.resources.pids:")


def test_environment_is_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, HEADER + "project: from-file\n")
    assert settings.load(path).project == "from-file"
    monkeypatch.setenv("YOLO_CAGE_PROJECT", "from-env")
    assert settings.load(path).project == "from-env"


def test_relative_references_resolve_against_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n")
    (tmp_path / "ca.pem").write_text("x")
    s = settings.load(write(tmp_path, HEADER + "policy: p.yaml\nimages: {extra_ca_bundle: ca.pem}\n"))
    assert s.policy == str(tmp_path / "p.yaml")
    assert s.images.extra_ca_bundle == str(tmp_path / "ca.pem")


def test_unsafe_switches_are_listed(tmp_path: Path) -> None:
    s = settings.load(write(tmp_path, HEADER + "unsafe_allow_host_access: true\n"))
    assert s.unsafe_switches() == ["unsafe_allow_host_access"]


def test_several_agents_and_kind_section(tmp_path: Path) -> None:
    s = settings.load(
        write(
            tmp_path,
            HEADER
            + "agents: [{name: a, branch: feat/a}, {name: b, resources: {memory: 2g, cpus: 1}}]\n"
            + "backends: {kind: {cluster_name: cage-test, calico_version: v3.30.1}}\n",
        )
    )
    assert s.agent_names == ["a", "b"]
    assert s.agents[0].git_branch == "feat/a"
    assert s.agents[1].resources.cpus == 1.0
    assert s.backends.kind.cluster_name == "cage-test"


def test_example_round_trips_and_spells_out_every_default() -> None:
    text = settings.example()
    data = yaml.safe_load(text)
    assert list(data)[:2] == ["apiVersion", "kind"]
    assert settings.from_mapping(data, source="example") == settings.from_mapping(
        {"apiVersion": settings.API_VERSION, "kind": settings.KIND}, source="defaults"
    )


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = settings.load(write(tmp_path, HEADER))
    with pytest.raises(Exception):
        s.project = "x"  # type: ignore[misc]
