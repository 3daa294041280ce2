"""kit.agents: names, records, and the agent.new / agent.rm steps against a fake backend (no Docker)."""

from __future__ import annotations

import fcntl
import json
import subprocess
from pathlib import Path

import pytest

from kit import agents, settings, state
from kit.errors import BackendError, CageError, ConfigError, StepError
from kit.settings import Agent


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("YOLO_CAGE_QUIET", "1")


def make_settings(**fields) -> settings.Settings:
    return settings.from_mapping({"apiVersion": settings.API_VERSION, "kind": settings.KIND, **fields}, source="t")


class FakeOps:
    """Records each lifecycle call; ``fail`` names a call that raises."""

    kind = "container"

    def __init__(self, fail: str = "", running: bool = True):
        self.calls: list[tuple] = []
        self.fail = fail
        self.running = running
        self.live: dict[str, list[str]] = {}  # agent -> its resources

    def _call(self, name: str, *args) -> None:
        self.calls.append((name, *args))
        if name == self.fail:
            raise CageError(f"simulated failure in {name}")

    def require_running(self):
        self._call("require_running")
        if not self.running:
            raise CageError("the cage is not up")

    def problems(self, agent, others):
        return []

    def resources(self, name):
        return list(self.live.get(name, []))

    def workspace_ref(self, name):
        return f"volume pp_workspace-{name}"

    def create(self, agent):
        self._call("create", agent.name)
        self.live[agent.name] = [f"container {agent.name}", f"network cage-{agent.name}"]
        return {"name": agent.name}

    def undo_create(self, created):
        self._call("undo_create", created and created["name"])
        self.live.pop((created or {}).get("name", ""), None)

    def fill_workspace(self, created, tar):
        self._call("fill_workspace", created["name"], tar.exists())
        return True

    def publish_registry(self, exclude=()):
        self._call("publish_registry", tuple(exclude))

    def start(self, agent):
        self._call("start", agent.name)

    def remove(self, name, *, keep_workspace):
        self._call("remove", name, keep_workspace)
        return self.live.pop(name, [])

    def converge(self):
        self._call("converge")

    def states(self):
        return {name: ("running", True) for name in self.live}


class FakeBackend:
    name = "compose"

    def __init__(self, cfg: settings.Settings):
        self.settings = cfg
        self.project = cfg.project


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch):
    def make(fail: str = "", running: bool = True, **fields):
        ops = FakeOps(fail, running)
        monkeypatch.setattr(agents, "ops_for", lambda backend: ops)
        return FakeBackend(make_settings(**fields)), ops

    return make


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
                    "-m", "init"], check=True)  # fmt: skip
    return path


# --- names and records -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "alice", "bob-2", "x" * 24])
def test_dns_label_names_pass(name: str) -> None:
    agents.check_name(name)


@pytest.mark.parametrize("name", ["", "Alice", "2bob", "bob_2", "bob-", "-bob", "x" * 25, "a.b", "a b", "ü"])
def test_other_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(CageError, match="DNS label"):
        agents.check_name(name)


@pytest.mark.parametrize("name", ["proxy", "scanner", "netguard", "agent", "cage", "egress"])
def test_names_of_cage_parts_are_reserved(name: str) -> None:
    with pytest.raises(CageError, match="reserved"):
        agents.check_name(name)


def test_resources_default_and_report_every_bad_value_at_once() -> None:
    assert agents.resources() == settings.Resources()
    assert agents.resources("2g", "1.5", 256) == settings.Resources(memory="2g", cpus=1.5, pids=256)
    with pytest.raises(ConfigError) as err:
        agents.resources("lots", "0.0001" if False else "-1", 5)
    assert len(err.value.problems) == 3
    with pytest.raises(ConfigError, match="--cpus"):
        agents.resources(cpus="two")


def test_records_merge_after_the_settings_agents_and_clashes_are_errors() -> None:
    cfg = make_settings(project="pp", agents=[{"name": "dev"}])
    assert agents.with_added(cfg) is cfg
    agents._record("pp", Agent(name="bob", branch="b"), created=2.0)
    agents._record("pp", Agent(name="alice", repo="/r"), created=1.0)
    merged = agents.with_added(cfg)
    assert merged.agent_names == ["dev", "alice", "bob"]
    assert merged.agents[2].git_branch == "b"
    agents._record("pp", Agent(name="dev"), created=3.0)
    with pytest.raises(ConfigError, match="dev: declared in the settings"):
        agents.with_added(cfg)


def test_records_are_private_and_a_damaged_one_is_named() -> None:
    agents._record("pp", Agent(name="bob"), created=1.0)
    path = agents.records_dir("pp") / "bob.json"
    assert path.stat().st_mode & 0o777 == 0o600
    state.write_private(path, b"{not json")
    with pytest.raises(CageError, match="bob.json is damaged"):
        agents.added("pp")


def test_one_agent_command_at_a_time_per_project() -> None:
    with agents.locked("pp"):
        with open(state.project_dir("pp") / agents.LOCK_FILE) as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(state.project_dir("pp") / agents.LOCK_FILE) as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released afterwards


# --- agent.new ----------------------------------------------------------------------------------


def test_new_runs_its_steps_in_order_and_records_the_agent(world, repo: Path) -> None:
    backend, ops = world(project="pp")
    report = agents.new(backend, agents.NewAgent("alice", "feature/a", str(repo)), clock=lambda: 5.0)
    assert [c[0] for c in ops.calls] == ["require_running", "create", "fill_workspace", "publish_registry", "start"]
    assert ops.calls[2] == ("fill_workspace", "alice", True)  # the checkout's tar existed then
    assert report.workspace == "checked out" and report.checkout and report.checkout.new_branch
    merged = agents.with_added(backend.settings)
    assert merged.agent_names == ["dev", "alice"] and merged.agents[1].repo == str(repo)
    assert (state.project_dir("pp") / "tokens" / "alice").exists()


def test_new_without_a_repository_leaves_the_workspace_empty(world) -> None:
    backend, ops = world()
    report = agents.new(backend, agents.NewAgent("bob"))
    assert "fill_workspace" not in [c[0] for c in ops.calls]
    assert report.workspace == "empty (no repository)" and report.agent.git_branch == "yolo-cage/bob"


def test_a_relative_local_repository_is_recorded_absolute(world, repo: Path, monkeypatch) -> None:
    backend, _ = world(project="pp")
    monkeypatch.chdir(repo.parent)
    agents.new(backend, agents.NewAgent("alice", "feature/x", "./repo"))
    assert agents.added("pp")[0].repo == str(repo)
    # The same branch of the same repository, named another way, is still taken.
    with pytest.raises(StepError, match="'alice''s already"):
        agents.new(backend, agents.NewAgent("bob", "feature/x", "./repo"))


def test_a_failed_start_removes_everything_this_new_made(world, repo: Path) -> None:
    backend, ops = world(fail="start", project="pp")
    with pytest.raises(StepError, match="simulated failure in start"):
        agents.new(backend, agents.NewAgent("alice", None, str(repo)))
    names = [c[0] for c in ops.calls]
    # Undone in reverse: the identity first, then the container, then the record.
    assert names[-3:] == ["publish_registry", "undo_create", "converge"]
    assert ops.calls[-3] == ("publish_registry", ("alice",))
    assert agents.added("pp") == [] and not (state.project_dir("pp") / "tokens" / "alice").exists()
    assert ops.live == {}


def test_retain_keeps_a_failed_agent(world) -> None:
    backend, ops = world(fail="start", project="pp")
    with pytest.raises(StepError):
        agents.new(backend, agents.NewAgent("alice"), retain=True)
    assert [a.name for a in agents.added("pp")] == ["alice"] and "alice" in ops.live


@pytest.mark.parametrize(
    "request_,fields,word",
    [
        (agents.NewAgent("dev"), {}, r"exists already \(from the settings\)"),
        (agents.NewAgent("bob", "yolo-cage/dev"), {}, "agent 'dev''s already"),
        (agents.NewAgent("bob", "bad..branch"), {}, "not a valid git branch"),
        (agents.NewAgent("bob", None, "https://u:p@example.org/a/b"), {}, "credential"),
    ],
)
def test_new_refuses_before_anything_is_made(world, request_, fields, word) -> None:
    backend, ops = world(project="pp", **fields)
    with pytest.raises(StepError, match=word):
        agents.new(backend, request_)
    assert [c[0] for c in ops.calls] == ["require_running"] and agents.added("pp") == []


def test_new_refuses_on_a_cage_that_is_down_and_leftovers_of_an_earlier_agent(world) -> None:
    backend, ops = world(running=False)
    with pytest.raises(StepError, match="not up"):
        agents.new(backend, agents.NewAgent("bob"))
    backend, ops = world()
    ops.live["bob"] = ["volume pp_home-bob"]
    with pytest.raises(StepError, match="still there .*agent.rm bob"):
        agents.new(backend, agents.NewAgent("bob"))


def test_a_kept_workspace_is_taken_over_by_a_new_agent_of_that_name(world) -> None:
    backend, ops = world(project="pp")
    ops.live["bob"] = ["volume pp_workspace-bob"]  # left by `agent.rm bob --keep-workspace`
    agents.new(backend, agents.NewAgent("bob"))
    assert [a.name for a in agents.added("pp")] == ["bob"]


def test_an_invalid_name_is_refused_before_the_backend_is_asked(world) -> None:
    backend, ops = world()
    with pytest.raises(CageError, match="DNS label"):
        agents.new(backend, agents.NewAgent("Bob"))
    assert ops.calls == []


# --- agent.rm -------------------------------------------------------------------------------------


def test_rm_revokes_the_identity_first_and_forgets_everything_of_the_agent(world) -> None:
    backend, ops = world(project="pp")
    agents.new(backend, agents.NewAgent("alice"))
    agents.new(backend, agents.NewAgent("bob"))
    placeholders = state.project_dir("pp") / "rendered" / "placeholders.json"
    state.write_private(placeholders, json.dumps({"alice": {"x": "1"}, "bob": {"x": "2"}}).encode())
    ops.calls.clear()
    removed = agents.remove(backend, "alice", keep_workspace=True)
    assert removed == ["container alice", "network cage-alice"]
    assert [c[0] for c in ops.calls] == ["publish_registry", "remove", "converge"]
    assert ops.calls[0] == ("publish_registry", ("alice",)) and ops.calls[1] == ("remove", "alice", True)
    assert [a.name for a in agents.added("pp")] == ["bob"]
    assert sorted(p.name for p in (state.project_dir("pp") / "tokens").iterdir()) == ["bob"]
    assert json.loads(placeholders.read_text()) == {"bob": {"x": "2"}}
    assert set(ops.live) == {"bob"}


def test_rm_twice_is_an_error_naming_the_agents_left(world) -> None:
    backend, ops = world(project="pp")
    agents.new(backend, agents.NewAgent("alice"))
    agents.remove(backend, "alice")
    with pytest.raises(BackendError, match="no agent named 'alice' .*agents: dev"):
        agents.remove(backend, "alice")


def test_rm_finishes_an_interrupted_removal(world) -> None:
    backend, ops = world(project="pp")
    ops.live["ghost"] = ["volume pp_workspace-ghost"]  # resources left, no record
    assert agents.remove(backend, "ghost") == ["volume pp_workspace-ghost"]


def test_rm_refuses_agents_of_the_settings_and_invalid_names(world) -> None:
    backend, ops = world(agents=[{"name": "dev"}, {"name": "extra"}])
    for name in ("dev", "extra"):
        with pytest.raises(CageError, match="declared in the settings file"):
            agents.remove(backend, name)
    with pytest.raises(CageError, match="DNS label"):
        agents.remove(backend, "../etc")
    assert ops.calls == []


# --- agent.list and names --------------------------------------------------------------------------


def test_listing_shows_where_each_agent_comes_from_and_leftovers(world) -> None:
    backend, ops = world(project="pp")
    agents.new(backend, agents.NewAgent("alice", "feature/a"))
    ops.live["stray"] = ["container stray"]
    rows = {r.name: r for r in agents.listing(backend)}
    assert (rows["dev"].source, rows["dev"].state) == ("settings", "not running")
    assert (rows["alice"].source, rows["alice"].branch, rows["alice"].healthy) == ("agent.new", "feature/a", True)
    assert rows["stray"].source == "unknown (leftover)"


def test_known_agent_names_the_agents_there_are(world) -> None:
    backend, _ = world()
    assert agents.known_agent(backend, "dev") == "dev"
    with pytest.raises(BackendError, match=r"no agent named 'bob' .*\(agents: dev\)"):
        agents.known_agent(backend, "bob")


def test_describe_says_what_was_made() -> None:
    from kit.agents_repo import Checkout

    report = agents.NewReport(Agent(name="a", repo="/r", branch="f"), Checkout("f", "0123456789abcdef", True, "main"),
                              "checked out")  # fmt: skip
    text = "\n".join(agents.describe(report, "container"))
    assert "/r on f" in text and "new branch from main, at 0123456789ab" in text and "memory 4g" in text
