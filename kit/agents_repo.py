"""An agent's repository, prepared on this machine with the user's own git access.

One repository serves every agent that works on it, without sharing any
writable git state between them:

- the kit fetches the repository once into a bare mirror under the state dir
  (``<state>/<project>/repos/``), and refreshes it before each new workspace;
- each agent's workspace is its own clone of that mirror (its own objects,
  refs, config and hooks; no alternates, no worktree links), checked out on the
  agent's branch and shipped into the agent's volume as a tar;
- ``origin`` is the real URL, so a push goes out through the proxy, where the
  branch binding of the agent's identity applies.

A shared ``.git`` (worktrees, or objects shared through alternates that an
agent could reach) would let one agent plant a hook, a config key such as
``core.fsmonitor`` or a ref that another agent then runs or trusts: a
cross-agent code-execution channel. Nothing here ever reads from a workspace
back into this machine either: the kit only writes into the cage.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kit import state
from kit.errors import CageError, PrerequisiteError, RunError
from kit.runner import run

AGENT_UID = AGENT_GID = 1000  # user dev in the agent image
MIRRORS = "repos"
CLONE_TIMEOUT = 1800.0
# git's own scp-like syntax: [user@]host:path, the host without slashes.
_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>(?!//)[^\s]+)$")
_SCHEMES_REMOTE = ("https", "http")
_SCHEMES_SSH = ("ssh", "git+ssh", "ssh+git")


@dataclass(frozen=True)
class RepoSource:
    """Where a repository comes from, and what the agent's workspace will call it."""

    spec: str  # as the user wrote it
    fetch_url: str  # what git on this machine fetches (an https or ssh URL, or a path)
    origin_url: str  # the workspace's `origin`: the https URL, or the path of a local repository
    local: bool  # a repository on this machine's disk (its origin is unreachable from the cage)

    @property
    def web_url(self) -> str | None:
        """The http(s) URL the proxy sees for pushes and fetches (None for a local repository)."""
        return None if self.local else self.origin_url


def parse(spec: str, base_dir: Path | None = None) -> RepoSource:
    """Classify ``spec``: an https URL, an SSH URL (fetched over SSH here; the agent's
    origin is the https URL of the same path), or a local path / ``file://`` URL."""
    text = spec.strip()
    if not text:
        raise CageError("--repo is empty: give an https URL, an SSH URL or a local path")
    parts = urlsplit(text) if "://" in text else None
    if parts is not None and parts.scheme in _SCHEMES_REMOTE:
        return _web(text, parts)
    if parts is not None and parts.scheme in _SCHEMES_SSH:
        return _ssh(text, parts.hostname or "", parts.path)
    if parts is not None and parts.scheme == "file":
        return _local(text, Path(parts.path), base_dir)
    if parts is not None:
        raise CageError(
            f"repository {text!r}: scheme {parts.scheme!r} is not supported "
            "(https, ssh or a local path; the cage's only way out is HTTP(S) through the proxy)"
        )
    match = _SCP.match(text)
    if match and not text.startswith(("/", ".", "~")):
        return _ssh(text, match["host"], "/" + match["path"].lstrip("/"))
    return _local(text, Path(text).expanduser(), base_dir)


def _web(text: str, parts) -> RepoSource:
    if parts.username or parts.password:
        raise CageError(
            f"repository {_redact(text)}: the URL carries a user or credential; it would be copied "
            "into the agent's workspace (git config). Give the URL without it: this machine's git "
            "credential helper fetches, and the proxy injects the agent's credential for pushes"
        )
    if not parts.hostname or parts.path.strip("/") == "":
        raise CageError(f"repository {text!r}: expected https://host/owner/name")
    if parts.query or parts.fragment:
        raise CageError(f"repository {text!r}: a repository URL has no query or fragment")
    return RepoSource(text, text, text, local=False)


def _ssh(text: str, host: str, path: str) -> RepoSource:
    if not host or path.strip("/") == "":
        raise CageError(f"repository {text!r}: expected git@host:owner/name or ssh://host/owner/name")
    # SSH has no route out of the cage: the agent's origin is the same repository over https.
    return RepoSource(text, text, f"https://{host.lower()}/{path.strip('/')}", local=False)


def _local(text: str, path: Path, base_dir: Path | None) -> RepoSource:
    resolved = (path if path.is_absolute() else (base_dir or Path.cwd()) / path).resolve()
    return RepoSource(text, str(resolved), str(resolved), local=True)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()


# --- git on this machine -------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    # Never wait for a password prompt nobody sees; messages in one language for the errors.
    return {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def git(*args: str | os.PathLike[str], timeout: float = 120.0, echo: bool = False, check: bool = True):
    try:
        return run(["git", *map(os.fspath, args)], env=_git_env(), timeout=timeout, echo=echo, check=check)
    except RunError as exc:
        if exc.returncode is None and "not found" in str(exc):
            raise PrerequisiteError("git is not installed on this machine: the kit prepares workspaces with it") from exc
        raise


def check_branch(branch: str) -> None:
    """Refuse a name git would not accept as a branch (git's own check, plus no leading '-')."""
    if not branch or branch.startswith("-") or branch == "HEAD":
        raise CageError(f"branch {branch!r} is not a valid git branch name")
    result = git("check-ref-format", "--branch", branch, check=False)
    if result.returncode != 0 or result.stdout.strip() != branch:
        raise CageError(f"branch {branch!r} is not a valid git branch name (git check-ref-format --branch)")


def verify_local(source: RepoSource) -> None:
    if not source.local:
        return
    path = Path(source.fetch_url)
    if not path.is_dir():
        raise CageError(f"repository {source.spec!r}: no such directory {path}")
    if git("-C", path, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise CageError(f"repository {source.spec!r}: {path} is not a git repository")


def mirror_path(project: str, source: RepoSource) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source.fetch_url.rstrip("/")).name.removesuffix(".git"))[:40] or "repo"
    digest = hashlib.sha256(source.fetch_url.encode()).hexdigest()[:12]
    return state.project_dir(project) / MIRRORS / f"{name}-{digest}.git"


def refresh_mirror(project: str, source: RepoSource) -> Path:
    """The bare mirror of ``source``, cloned the first time and fetched every later time."""
    path = mirror_path(project, source)
    if (path / "HEAD").is_file():
        _fetch(path, source)
        return path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        _describe_failure(source, lambda: git("clone", "--bare", "--quiet", "--", source.fetch_url, scratch / "m",
                                              timeout=CLONE_TIMEOUT, echo=True))  # fmt: skip
        # A mirror appears whole or not at all (an interrupted clone leaves only scratch).
        os.replace(scratch / "m", path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def _fetch(path: Path, source: RepoSource) -> None:
    refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
    _describe_failure(
        source,
        lambda: git("--git-dir", path, "fetch", "--quiet", "--prune", "--", source.fetch_url, *refspecs,
                    timeout=CLONE_TIMEOUT, echo=True),
    )  # fmt: skip


def _describe_failure(source: RepoSource, action) -> None:
    try:
        action()
    except RunError as exc:
        raise CageError(
            f"cannot fetch {source.spec!r} on this machine: {exc.output.strip()[-600:] or exc}\n"
            "(the kit fetches with your own git access: check the URL, your credential helper or SSH agent)"
        ) from exc


# --- the agent's own clone ---------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    branch: str
    commit: str | None  # None: the repository has no commit yet
    new_branch: bool  # the branch did not exist in the repository: made from its default branch
    base: str | None  # the branch it was made from, for a new branch


def has_branch(mirror: Path, branch: str) -> bool:
    return git("--git-dir", mirror, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}",
               check=False).returncode == 0  # fmt: skip


def clone(mirror: Path, source: RepoSource, branch: str, agent: str, dest: Path) -> Checkout:
    """``dest``: an independent clone of ``mirror`` on ``branch`` (made from the default branch
    when it does not exist), ``origin`` set to the real URL, git identity of the agent."""
    existing = has_branch(mirror, branch)
    base = _default_branch(mirror)
    args = ["clone", "--quiet", "--no-hardlinks", "--origin", "origin"] + (["--branch", branch] if existing else [])
    git(*args, "--", mirror, dest, timeout=CLONE_TIMEOUT)
    if not existing:
        if git("-C", dest, "rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode == 0:
            git("-C", dest, "checkout", "--quiet", "--no-track", "-b", branch)
        else:  # an empty repository: the first commit will start the branch
            git("-C", dest, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    _configure(dest, source, branch, agent)
    head = git("-C", dest, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    commit = head.stdout.strip() if head.returncode == 0 else None
    return Checkout(branch, commit, new_branch=not existing, base=None if existing else base)


def _default_branch(mirror: Path) -> str | None:
    result = git("--git-dir", mirror, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return result.stdout.strip() or None


def _configure(dest: Path, source: RepoSource, branch: str, agent: str) -> None:
    settings = {
        "remote.origin.url": source.origin_url,
        # A new branch has no upstream yet: the first `git push` creates it under the same name.
        "push.default": "current",
        "push.autoSetupRemote": "true",
        # Commits say which agent made them; the user can change it inside the workspace.
        "user.name": f"{agent} (yolo-cage agent)",
        "user.email": f"{agent}@agents.yolo-cage.invalid",
    }
    for key, value in settings.items():
        git("-C", dest, "config", key, value)
    # Only git's samples are there; nothing of the mirror's. Start with none at all.
    shutil.rmtree(dest / ".git" / "hooks", ignore_errors=True)
    (dest / ".git" / "hooks").mkdir()
    if (dest / ".git" / "objects" / "info" / "alternates").exists():
        raise CageError(f"the clone at {dest} borrows objects (alternates): refusing to ship it")


# --- shipping it into a volume ---------------------------------------------------------------


def write_tar(source_dir: Path, out: Path) -> int:
    """A tar of ``source_dir`` as the agent's user owns it (uid/gid 1000), its root included.
    Returns the number of entries."""
    count = 0

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        nonlocal count
        count += 1
        info.uid, info.gid, info.uname, info.gname = AGENT_UID, AGENT_GID, "dev", "dev"
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(source_dir, arcname=".", recursive=True, filter=owned)
    return count


@contextmanager
def prepared_workspace(
    project: str, source: RepoSource | None, branch: str, agent: str
) -> Iterator[tuple[Path | None, Checkout | None]]:
    """(tar of the workspace, what was checked out), or (None, None) without a repository.
    The scratch directory on this machine is removed afterwards."""
    if source is None:
        yield None, None
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"yolo-cage-{agent}-"))
    try:
        os.chmod(scratch, 0o700)
        mirror = refresh_mirror(project, source)
        checkout = clone(mirror, source, branch, agent, scratch / "workspace")
        tar_path = scratch / "workspace.tar"
        write_tar(scratch / "workspace", tar_path)
        yield tar_path, checkout
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
