"""kit.agents_repo: repositories classified, mirrored and cloned per agent with real git (no Docker)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from kit import agents_repo
from kit.agents_repo import RepoSource
from kit.errors import CageError


def sh(*argv: str, cwd: Path | None = None) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """A repository with a default branch `main` (two commits) and a branch `feature/login`."""
    repo = tmp_path / "upstream"
    sh("git", "init", "-q", "-b", "main", str(repo))
    for key, value in (("user.name", "t"), ("user.email", "t@example.invalid")):
        sh("git", "-C", str(repo), "config", key, value)
    (repo / "app.py").write_text("print('v1')\n")
    sh("git", "-C", str(repo), "add", ".")
    sh("git", "-C", str(repo), "commit", "-qm", "one")
    sh("git", "-C", str(repo), "checkout", "-qb", "feature/login")
    (repo / "login.py").write_text("x = 1\n")
    sh("git", "-C", str(repo), "add", ".")
    sh("git", "-C", str(repo), "commit", "-qm", "login")
    sh("git", "-C", str(repo), "checkout", "-q", "main")
    (repo / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (repo / "run.sh").chmod(0o755)
    sh("git", "-C", str(repo), "add", ".")
    sh("git", "-C", str(repo), "commit", "-qm", "two")
    return repo


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))


# --- classification -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,fetch,origin,local",
    [
        ("https://github.com/acme/app.git", "https://github.com/acme/app.git", "https://github.com/acme/app.git", False),
        ("http://git.local:8080/acme/app", "http://git.local:8080/acme/app", "http://git.local:8080/acme/app", False),
        ("git@github.com:acme/app.git", "git@github.com:acme/app.git", "https://github.com/acme/app.git", False),
        ("ssh://git@GitHub.com:22/acme/app.git", "ssh://git@GitHub.com:22/acme/app.git", "https://github.com/acme/app.git", False),
        ("/srv/repos/app", "/srv/repos/app", "/srv/repos/app", True),
        ("file:///srv/repos/app", "/srv/repos/app", "/srv/repos/app", True),
    ],
)
def test_repositories_are_classified_and_ssh_becomes_https_for_the_agent(spec, fetch, origin, local) -> None:
    source = agents_repo.parse(spec)
    assert (source.fetch_url, source.origin_url, source.local) == (fetch, origin, local)
    assert source.web_url == (None if local else origin)


def test_a_relative_path_is_made_absolute(tmp_path: Path) -> None:
    assert agents_repo.parse("./app", base_dir=tmp_path).fetch_url == str(tmp_path / "app")


@pytest.mark.parametrize(
    "spec,word",
    [
        ("https://user:ghp_abcdef@github.com/acme/app.git", "credential"),
        ("https://github.com/", "owner/name"),
        ("https://github.com/acme/app?x=1", "query"),
        ("git://github.com/acme/app.git", "not supported"),
        ("ftp://example.org/app", "not supported"),
        ("", "empty"),
    ],
)
def test_bad_repositories_are_refused_with_the_reason(spec: str, word: str) -> None:
    with pytest.raises(CageError, match=word) as err:
        agents_repo.parse(spec)
    assert "ghp_abcdef" not in str(err.value)


def test_a_local_repository_must_exist_and_be_a_git_repository(tmp_path: Path, upstream: Path) -> None:
    agents_repo.verify_local(agents_repo.parse(str(upstream)))
    with pytest.raises(CageError, match="no such directory"):
        agents_repo.verify_local(agents_repo.parse(str(tmp_path / "missing")))
    (tmp_path / "plain").mkdir()
    with pytest.raises(CageError, match="not a git repository"):
        agents_repo.verify_local(agents_repo.parse(str(tmp_path / "plain")))


@pytest.mark.parametrize("branch", ["feature/x", "yolo-cage/dev", "fix-1.2"])
def test_valid_branch_names_pass(branch: str) -> None:
    agents_repo.check_branch(branch)


@pytest.mark.parametrize("branch", ["", "-rf", "HEAD", "a..b", "a b", "x.lock", "refs/../x", "a~1", "feature/", "@{u}"])
def test_invalid_branch_names_are_refused(branch: str) -> None:
    with pytest.raises(CageError, match="not a valid git branch"):
        agents_repo.check_branch(branch)


# --- mirror and clones ---------------------------------------------------------------------------


def test_the_mirror_is_made_once_and_then_fetched(upstream: Path) -> None:
    source = agents_repo.parse(str(upstream))
    mirror = agents_repo.refresh_mirror("p", source)
    assert sh("git", "--git-dir", str(mirror), "rev-parse", "--is-bare-repository") == "true"
    assert agents_repo.has_branch(mirror, "feature/login") and not agents_repo.has_branch(mirror, "nope")
    sh("git", "-C", str(upstream), "checkout", "-qb", "later")
    assert agents_repo.refresh_mirror("p", source) == mirror
    assert agents_repo.has_branch(mirror, "later")
    assert [p.name for p in mirror.parent.iterdir()] == [mirror.name]  # no scratch left behind


def test_a_fetch_failure_says_it_used_this_machines_git_access(tmp_path: Path) -> None:
    (tmp_path / "gone").mkdir()
    source = RepoSource("x", str(tmp_path / "gone"), str(tmp_path / "gone"), local=True)
    with pytest.raises(CageError, match="your own git access"):
        agents_repo.refresh_mirror("p", source)
    assert not agents_repo.mirror_path("p", source).exists()


def clone(upstream: Path, tmp_path: Path, branch: str, agent: str = "alice") -> tuple[Path, agents_repo.Checkout]:
    source = agents_repo.parse(str(upstream))
    mirror = agents_repo.refresh_mirror("p", source)
    dest = tmp_path / f"ws-{agent}"
    return dest, agents_repo.clone(mirror, source, branch, agent, dest)


def test_an_existing_branch_is_checked_out_tracking_origin(upstream: Path, tmp_path: Path) -> None:
    dest, co = clone(upstream, tmp_path, "feature/login")
    assert (co.branch, co.new_branch, co.base) == ("feature/login", False, None)
    assert co.commit == sh("git", "-C", str(upstream), "rev-parse", "feature/login")
    assert sh("git", "-C", str(dest), "rev-parse", "--abbrev-ref", "HEAD") == "feature/login"
    assert sh("git", "-C", str(dest), "rev-parse", "--abbrev-ref", "@{upstream}") == "origin/feature/login"
    assert (dest / "login.py").exists()


def test_a_new_branch_starts_from_the_default_branch(upstream: Path, tmp_path: Path) -> None:
    dest, co = clone(upstream, tmp_path, "yolo-cage/alice")
    assert (co.new_branch, co.base) == (True, "main")
    assert co.commit == sh("git", "-C", str(upstream), "rev-parse", "main")
    assert sh("git", "-C", str(dest), "symbolic-ref", "--short", "HEAD") == "yolo-cage/alice"
    # The first push creates the branch upstream under the same name.
    assert sh("git", "-C", str(dest), "config", "push.default") == "current"
    assert sh("git", "-C", str(dest), "config", "push.autoSetupRemote") == "true"


def test_each_clone_is_independent_with_origin_and_identity_and_no_hooks(upstream: Path, tmp_path: Path) -> None:
    a, _ = clone(upstream, tmp_path, "yolo-cage/a", "a")
    b, _ = clone(upstream, tmp_path, "yolo-cage/b", "b")
    for dest, agent in ((a, "a"), (b, "b")):
        assert sh("git", "-C", str(dest), "remote", "get-url", "origin") == str(upstream)
        assert sh("git", "-C", str(dest), "config", "user.name") == f"{agent} (yolo-cage agent)"
        assert list((dest / ".git" / "hooks").iterdir()) == []
        assert not (dest / ".git" / "objects" / "info" / "alternates").exists()
    # Nothing shared: a hook or a config key planted in one clone is absent from the other.
    (a / ".git" / "hooks" / "post-checkout").write_text("#!/bin/sh\ntouch /tmp/pwned\n")
    sh("git", "-C", str(a), "config", "core.fsmonitor", "/tmp/evil")
    assert not (b / ".git" / "hooks" / "post-checkout").exists()
    assert subprocess.run(["git", "-C", str(b), "config", "core.fsmonitor"], capture_output=True).returncode == 1
    assert (a / ".git" / "objects").stat().st_ino != (b / ".git" / "objects").stat().st_ino
    # --no-hardlinks: no object file of a clone is a link to the mirror's (or another clone's).
    objects = [p for p in (a / ".git" / "objects").rglob("*") if p.is_file()]
    assert objects and all(p.stat().st_nlink == 1 for p in objects)


def test_an_empty_repository_gives_an_unborn_branch(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    sh("git", "init", "-q", "-b", "main", str(empty))
    dest, co = clone(empty, tmp_path, "feature/first")
    assert (co.commit, co.new_branch) == (None, True)
    assert sh("git", "-C", str(dest), "symbolic-ref", "HEAD") == "refs/heads/feature/first"


def test_the_tar_belongs_to_the_agents_user_and_keeps_modes(upstream: Path, tmp_path: Path) -> None:
    dest, _ = clone(upstream, tmp_path, "yolo-cage/alice")
    out = tmp_path / "ws.tar"
    count = agents_repo.write_tar(dest, out)
    with tarfile.open(out) as tar:
        members = tar.getmembers()
    assert len(members) == count and members[0].name == "." and members[0].isdir()
    assert {(m.uid, m.gid) for m in members} == {(1000, 1000)}
    by_name = {m.name: m for m in members}
    assert by_name["./run.sh"].mode & 0o111 and not by_name["./app.py"].mode & 0o111
    assert "./.git/HEAD" in by_name


def test_prepared_workspace_cleans_up_its_scratch(upstream: Path) -> None:
    source = agents_repo.parse(str(upstream))
    with agents_repo.prepared_workspace("p", source, "yolo-cage/x", "x") as (tar, co):
        assert tar is not None and tar.exists() and co is not None
        scratch = tar.parent
    assert not scratch.exists()
    with agents_repo.prepared_workspace("p", None, "b", "x") as (tar, co):
        assert (tar, co) == (None, None)
