"""kit.credentials: real values found on the host, placeholders for agents, and what the plan does with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from addon import identity
from addon import policy as model
from kit import composeplan, credentials, hostguard, settings
from kit.errors import ConfigError
from kit.hostguard import Engine

HEAD = "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"
REAL = "real-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def policy(text: str) -> model.Policy:
    return model.parse(HEAD + text)


def test_values_come_from_env_files_and_json(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(REAL + "\n")
    (tmp_path / "creds.json").write_text(json.dumps({"claudeAiOauth": {"accessToken": "sk-ant-oat01-" + "x" * 30}}))
    p = policy("""
credentials:
  bindings:
    - {name: from-env, preset: github-token}
    - {name: from-file, mode: inject, source: {file: token}, hosts: [a.example], where: [{header: X-Key}]}
    - {name: from-json, preset: claude-oauth, source: {file: creds.json, json_pointer: /claudeAiOauth/accessToken}}
""")
    bound = credentials.resolve(p, tmp_path, {"GITHUB_TOKEN": " ghp-like-value-1234 \n"})
    assert {r.name: r.value for r in bound.resolved} == {
        "from-env": b"ghp-like-value-1234", "from-file": REAL.encode(), "from-json": b"sk-ant-oat01-" + b"x" * 30,
    }  # fmt: skip
    assert [r.name for r in bound.injected] == ["from-env", "from-file"]
    assert bound.files()["from-file"] == REAL.encode() + b"\n"
    assert REAL not in repr(bound)


def test_required_bindings_without_a_value_stop_everything_and_say_why(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("abc")
    (tmp_path / "spaced").write_text("two words here")
    (tmp_path / "creds.json").write_text("{}")
    p = policy("""
credentials:
  bindings:
    - {name: a, preset: anthropic-api-key}
    - {name: b, mode: inject, source: {file: short}, hosts: [a.example], where: [{header: X-Key}]}
    - {name: c, mode: inject, source: {file: spaced}, hosts: [a.example], where: [{header: X-Key}]}
    - {name: d, preset: claude-oauth, source: {file: creds.json, json_pointer: /claudeAiOauth/accessToken}}
    - {name: e, mode: inject, source: {file: missing}, hosts: [a.example], where: [{header: X-Key}]}
""")
    with pytest.raises(ConfigError) as exc:
        credentials.resolve(p, tmp_path, {})
    problems = exc.value.problems
    assert problems[0] == "credential a: not set or empty (environment variable ANTHROPIC_API_KEY)"
    assert "shorter than 8 characters" in problems[1]
    assert "not a single printable ASCII token" in problems[2] and "two words" not in problems[2]
    assert "has nothing at /claudeAiOauth/accessToken" in problems[3]
    assert "cannot read" in problems[4] and len(problems) == 5


def test_optional_bindings_are_skipped_with_a_notice() -> None:
    bound = credentials.resolve(model.default_policy(), None, {"ANTHROPIC_API_KEY": "sk-ant-api03-" + "k" * 40})
    assert [r.name for r in bound.resolved] == ["anthropic-api-key"]
    assert bound.skipped == ("github-token: not set or empty (environment variable GITHUB_TOKEN); not bound",)


def test_placeholders_are_per_agent_kept_across_runs_and_only_for_bound_bindings(state_dir: Path) -> None:
    env = {"ANTHROPIC_API_KEY": "sk-ant-api03-" + "k" * 40, "GITHUB_TOKEN": REAL}
    credentials.record("p", credentials.resolve(model.default_policy(), None, env))
    first, first_env = credentials.for_agents("p", ["a", "b"])
    again, _ = credentials.for_agents("p", ["a", "b", "c"])
    assert again["a"] == first["a"] and again["b"] == first["b"] and set(again["c"]) == {"anthropic-api-key", "github-token"}
    assert first["a"]["github-token"] != first["b"]["github-token"]
    assert first_env["a"] == {
        "ANTHROPIC_API_KEY": first["a"]["anthropic-api-key"],
        "GH_TOKEN": first["a"]["github-token"], "GITHUB_TOKEN": first["a"]["github-token"],
    }  # fmt: skip
    assert (state_dir / "p" / "rendered" / "placeholders.json").stat().st_mode & 0o777 == 0o600
    # Without the token on the next up, the GitHub binding is gone for everyone.
    credentials.record("p", credentials.resolve(model.default_policy(), None, {"ANTHROPIC_API_KEY": env["ANTHROPIC_API_KEY"]}))
    later, later_env = credentials.for_agents("p", ["a"])
    assert later == {"a": {"anthropic-api-key": first["a"]["anthropic-api-key"]}}
    assert set(later_env["a"]) == {"ANTHROPIC_API_KEY"}
    assert REAL not in (state_dir / "p" / "rendered" / "credentials.json").read_text()


def test_a_plan_that_must_not_create_reads_only(state_dir: Path) -> None:
    credentials.record("p", credentials.resolve(model.default_policy(), None, {"GITHUB_TOKEN": REAL}))
    assert credentials.for_agents("p", ["a"], create=False) == ({"a": {}}, {"a": {}})
    assert not (state_dir / "p" / "rendered" / "placeholders.json").exists()


def test_git_fields_name_the_repository_canonically() -> None:
    assert credentials.git_fields("yolo-cage/a", "https://GitHub.com/Acme/App.git") == {
        "branch": "yolo-cage/a", "repositories": ["github.com/acme/app"],
    }  # fmt: skip
    assert credentials.git_fields("b", None) == {"branch": "b", "repositories": []}
    assert credentials.git_fields("b", "/srv/local/repo") == {"branch": "b", "repositories": []}


def test_the_plan_gives_each_agent_its_placeholders_and_the_registry_says_whose_they_are(tmp_path: Path) -> None:
    s = settings.from_mapping(
        {"apiVersion": settings.API_VERSION, "kind": settings.KIND,
         "agents": [{"name": "a", "repo": "https://github.com/acme/app.git"}, {"name": "b", "branch": "feature/b"}]},
        source="t",
    )  # fmt: skip
    credentials.record(s.project, credentials.resolve(model.default_policy(), None, {"GITHUB_TOKEN": REAL}))
    placeholders, env = credentials.for_agents(s.project, ["a", "b"])
    plan = composeplan.Plan(
        settings=s,
        isolation=hostguard.choose(s, Engine("20.10.24")),
        agents=composeplan.agent_plans(s, {"a": "token-a", "b": "token-b"}, placeholders, env),
        state_dir=tmp_path,
    )
    doc = plan.generated()
    assert doc["services"]["agent"]["environment"] == env["a"]
    assert doc["services"]["agent-b"]["environment"]["GH_TOKEN"] == placeholders["b"]["github-token"]
    text = json.dumps(doc)
    assert REAL not in text
    data = composeplan.registry_json(plan.agents, {"cage": ["10.1.0.0/24"], "cage-b": ["10.2.0.0/24"]})
    registry = identity.parse_registry(data.decode())  # what the addon accepts
    assert registry.agents["a"].repositories == ("github.com/acme/app",) and registry.agents["a"].branch == "yolo-cage/a"
    assert registry.agents["b"].branch == "feature/b" and registry.agents["b"].repositories == ()
    assert registry.agents["b"].credentials == placeholders["b"]
    assert REAL not in data.decode()


def test_agent_rm_forgets_only_that_agents_placeholders(state_dir: Path) -> None:
    credentials.record("p", credentials.resolve(model.default_policy(), None, {"GITHUB_TOKEN": REAL}))
    before, _ = credentials.for_agents("p", ["a", "b"])
    credentials.forget("p", "a")
    credentials.forget("p", "nobody")
    after, _ = credentials.for_agents("p", ["a", "b"])
    assert after["b"] == before["b"] and after["a"] != before["a"]


def test_nothing_is_written_when_nothing_is_bound(state_dir: Path) -> None:
    assert credentials.for_agents("p", ["a"]) == ({"a": {}}, {"a": {}})
    assert not (state_dir / "p").exists()


def test_kind_gives_agents_placeholders_and_only_the_proxy_and_scanner_the_values(state_dir: Path) -> None:
    import dataclasses

    from kit import kind, kindrender

    s = settings.from_mapping(
        {"apiVersion": settings.API_VERSION, "kind": settings.KIND, "backend": "kind",
         "agents": [{"name": "alice", "repo": "https://github.com/acme/app"}]},
        source="t",
    )  # fmt: skip
    bound = credentials.resolve(model.default_policy(), None, {"GITHUB_TOKEN": REAL})
    credentials.record(s.project, bound)
    registry = identity.parse_registry(kind.registry_json(s, {"alice": "tok"}, "192.168.0.0/16").decode())
    alice = registry.agents["alice"]
    assert alice.repositories == ("github.com/acme/app",) and set(alice.credentials) == {"github-token"}
    _, env = credentials.for_agents(s.project, ["alice"])
    spec = dataclasses.replace(kindrender.AgentSpec.from_settings(s.agents[0]), env=tuple(sorted(env["alice"].items())))
    deployment = next(d for d in kindrender.agent_docs(spec) if d["kind"] == "Deployment")
    container_env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert container_env["GH_TOKEN"] == container_env["GITHUB_TOKEN"] == alice.credentials["github-token"]
    assert REAL not in json.dumps(deployment)
    inputs = kindrender.CageInputs(
        project=s.project, ca_cert_pem=b"c", ca_key_and_cert_pem=b"k", policy_yaml="", agents_json=b"{}",
        proxy_urls={"alice": "http://alice:tok@proxy:8080"}, credentials=bound.files(),
    )  # fmt: skip
    objects = kindrender.cage_objects(inputs)
    holders = [o["metadata"]["name"] for o in objects if REAL in json.dumps(o) or _b64(REAL) in json.dumps(o)]
    assert holders == [kindrender.CREDENTIALS_SECRET]


def _b64(text: str) -> str:
    import base64

    return base64.b64encode((text + "\n").encode()).decode()
