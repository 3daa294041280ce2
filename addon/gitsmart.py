"""Git smart HTTP at the proxy: which repository a request is for, and what a push would change.

A push is two requests: ``GET <repo>/info/refs?service=git-receive-pack`` (the
server advertises its refs) then ``POST <repo>/git-receive-pack``, whose body is
pkt-lines (``[shallow <oid>]* <old> <new> <ref>[NUL caps] ... flush
[push-options... flush] PACK...``). The proxy reads both: a push goes only to
an agent's own repository, updates only its own branch, never deletes, never
touches tags, and an update must be a fast-forward: ``<old>`` is the tip the
server advertised and ``<new>`` reaches it through the commits in the pack
(:mod:`addon.gitpack`). Anything it cannot parse is refused.

Pure: imports nothing from mitmproxy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from addon.decision import Decision, allow, block
from addon.hostnames import HostError, parse_host
from addon.rules import normalise_path, segments_match

MAX_PKT = 65520  # git's LARGE_PACKET_MAX: no pkt-line is longer
MAX_COMMANDS = 4096
UPLOAD, RECEIVE = "git-upload-pack", "git-receive-pack"
_HEX = re.compile(rb"^[0-9a-f]+$")
_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


class GitProtocolError(ValueError):
    """The request is not well-formed git smart HTTP (it is refused, never guessed at)."""


# --- pkt-lines ---------------------------------------------------------------------------


FLUSH, DELIM, END = "flush", "delim", "end"


def read_pkt(data: bytes | memoryview, pos: int) -> tuple[bytes | str, int]:
    """One pkt-line at ``pos``: (payload, next) or (FLUSH | DELIM | END, next)."""
    head = bytes(data[pos : pos + 4])
    if len(head) < 4:
        raise GitProtocolError(f"truncated pkt-line length at byte {pos}")
    if not all(c in b"0123456789abcdefABCDEF" for c in head):
        raise GitProtocolError(f"bad pkt-line length {head!r} at byte {pos}")
    size = int(head, 16)
    if size < 4:
        special = {0: FLUSH, 1: DELIM, 2: END}.get(size)
        if special is None:
            raise GitProtocolError(f"invalid pkt-line length {head!r} at byte {pos}")
        return special, pos + 4
    if size > MAX_PKT:
        raise GitProtocolError(f"pkt-line of {size} bytes at byte {pos} is over git's limit ({MAX_PKT})")
    if pos + size > len(data):
        raise GitProtocolError(f"truncated pkt-line at byte {pos} ({size} bytes announced)")
    return bytes(data[pos + 4 : pos + size]), pos + size


def pkt(payload: bytes) -> bytes:
    """Encode one pkt-line (tests and stand-ins build requests with it)."""
    return b"%04x" % (len(payload) + 4) + payload


# --- refs and object ids -------------------------------------------------------------------


def is_oid(text: bytes | str) -> bool:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw) in (40, 64) and bool(_HEX.match(raw))


def is_zero(oid: str) -> bool:
    return oid.strip("0") == ""


def check_ref_format(ref: str) -> str | None:
    """Why ``ref`` is not a valid full ref name (git check-ref-format), or None."""
    if not ref.startswith("refs/") or ref.endswith(("/", ".", ".lock")):
        return "must start with refs/ and not end with '/', '.' or '.lock'"
    if _REF_BAD_CHARS.search(ref) or ".." in ref or "@{" in ref or "//" in ref:
        return "holds a character or sequence git does not allow in ref names"
    if any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        return "a component starts with '.' or ends with '.lock'"
    return None


def check_branch(branch: str) -> str | None:
    """Why ``branch`` (short name, e.g. yolo-cage/dev) is not a valid branch name, or None."""
    if branch.startswith("-") or branch == "HEAD":
        return "not a branch name"
    return check_ref_format(f"refs/heads/{branch}")


@dataclass(frozen=True, slots=True)
class Command:
    old: str
    new: str
    ref: str

    @property
    def is_create(self) -> bool:
        return is_zero(self.old)

    @property
    def is_delete(self) -> bool:
        return is_zero(self.new)


@dataclass(frozen=True, slots=True)
class Push:
    """A parsed receive-pack request body."""

    commands: tuple[Command, ...]
    capabilities: frozenset[str] = frozenset()
    shallow: tuple[str, ...] = ()
    push_options: tuple[str, ...] = ()
    pack_offset: int | None = None  # where the packfile starts in the body

    @property
    def oid_length(self) -> int:
        return 64 if "object-format=sha256" in self.capabilities else 40


def _command(line: bytes) -> Command:
    parts = line.split(b" ")
    if len(parts) != 3 or not is_oid(parts[0]) or len(parts[0]) != len(parts[1]) or not is_oid(parts[1]):
        raise GitProtocolError(f"not a receive-pack command: {line[:120]!r}")
    try:
        ref = parts[2].decode("utf-8")
    except UnicodeDecodeError:
        raise GitProtocolError("a ref name is not UTF-8") from None
    if problem := check_ref_format(ref):
        raise GitProtocolError(f"invalid ref name {ref[:120]!r}: {problem}")
    return Command(parts[0].decode(), parts[1].decode(), ref)


def parse_receive_pack(body: bytes) -> Push:
    """The commands (and where the pack starts) of a ``POST .../git-receive-pack`` body."""
    view = memoryview(body)
    pos, shallow, commands, caps = 0, [], [], frozenset[str]()
    if not body:
        return Push(())
    while True:
        item, pos = read_pkt(view, pos)
        if item == FLUSH:
            break
        if isinstance(item, str):
            raise GitProtocolError(f"unexpected {item} packet in the command list")
        line = item.removesuffix(b"\n")
        if line.startswith(b"shallow ") and not commands:
            if not is_oid(line[8:]):
                raise GitProtocolError(f"bad shallow line {line[:120]!r}")
            shallow.append(line[8:].decode())
            continue
        if line.startswith(b"push-cert"):
            raise GitProtocolError("signed pushes (push-cert) are not supported through the proxy")
        if not commands and b"\0" in line:
            line, _, raw_caps = line.partition(b"\0")
            caps = frozenset(raw_caps.decode("utf-8", "replace").split())
        if len(commands) >= MAX_COMMANDS:
            raise GitProtocolError(f"more than {MAX_COMMANDS} ref updates in one push")
        commands.append(_command(line))
    options: list[str] = []
    if "push-options" in caps:
        pos, options = _push_options(view, pos)
    push = Push(tuple(commands), caps, tuple(shallow), tuple(options))
    return _with_pack(push, body, pos)


def _push_options(view: memoryview, pos: int) -> tuple[int, list[str]]:
    options = []
    while True:
        item, pos = read_pkt(view, pos)
        if item == FLUSH:
            return pos, options
        if isinstance(item, str):
            raise GitProtocolError(f"unexpected {item} packet in the push options")
        options.append(item.removesuffix(b"\n").decode("utf-8", "replace"))


def _with_pack(push: Push, body: bytes, pos: int) -> Push:
    rest = len(body) - pos
    if any(not c.is_delete for c in push.commands):
        if not body.startswith(b"PACK", pos):
            raise GitProtocolError("the push carries no packfile after its commands")
        return Push(push.commands, push.capabilities, push.shallow, push.push_options, pos)
    if rest:
        # Only deletions (or nothing): git sends no pack, so trailing bytes are smuggled.
        raise GitProtocolError(f"{rest} unexpected bytes after the commands")
    return push


def looks_like_receive_pack(body: bytes) -> bool:
    """A body shaped like receive-pack commands, whatever the URL says (a renamed endpoint)."""
    try:
        first, _ = read_pkt(body, 0)
    except GitProtocolError:
        return False
    if not isinstance(first, bytes):
        return False
    line = first.split(b"\0", 1)[0].removesuffix(b"\n")
    if line.startswith((b"shallow ", b"push-cert")):
        return True
    parts = line.split(b" ")
    return len(parts) == 3 and is_oid(parts[0]) and is_oid(parts[1])


# --- the ref advertisement (GET info/refs?service=git-receive-pack) --------------------------------


def parse_advertisement(body: bytes) -> dict[str, str]:
    """Ref -> oid from a smart-HTTP ref advertisement (the repository's current tips)."""
    view = memoryview(body)
    pos, refs, first = 0, {}, True
    while pos < len(body):
        item, pos = read_pkt(view, pos)
        if isinstance(item, str):
            continue  # the flush after "# service=..." and the final one
        line = item.removesuffix(b"\n")
        if line.startswith(b"# service=") or line == b"version 1":
            continue
        if first and b"\0" in line:
            line = line.split(b"\0", 1)[0]
        first = False
        oid, _, ref = line.partition(b" ")
        if not is_oid(oid) or not ref:
            raise GitProtocolError(f"not a ref advertisement line: {line[:120]!r}")
        name = ref.decode("utf-8", "replace")
        if name != "capabilities^{}":
            refs[name] = oid.decode()
    return refs


# --- which repository ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GitRequest:
    service: str  # UPLOAD or RECEIVE
    advertisement: bool  # GET info/refs (else the POST to the service)
    repository: str  # canonical host[:port]/path, see canonical_repository


def _authority(host: str, port: int, scheme: str) -> str:
    default = 443 if scheme == "https" else 80
    return host if port == default else f"{host}:{port}"


def _repository(authority: str, segments: Sequence[str]) -> str:
    parts = list(segments)
    if parts and parts[-1].endswith(".git"):
        parts[-1] = parts[-1][:-4]
    return "/".join([authority, *parts])


def classify(*, host: str, port: int, scheme: str, method: str, path: str, content_type: str, body_start: bytes = b"") -> GitRequest | None:
    """The git smart-HTTP request this is, or None. Found by path, by ``service=``,
    by content type or by a body shaped like receive-pack commands."""
    segments = normalise_path(path)
    query = parse_qsl(urlsplit(path).query, keep_blank_values=True)
    services = [v for k, v in query if k == "service"]
    authority = _authority(host, port, scheme)
    media = content_type.split(";", 1)[0].strip().lower()
    if segments[-2:] == ("info", "refs") and services:
        if len(services) != 1 or services[0] not in (UPLOAD, RECEIVE):
            return GitRequest(RECEIVE, True, _repository(authority, segments[:-2]))  # judged as strictly as a push
        return GitRequest(services[0], True, _repository(authority, segments[:-2]))
    if segments and segments[-1] in (UPLOAD, RECEIVE):
        return GitRequest(segments[-1], False, _repository(authority, segments[:-1]))
    if media in (f"application/x-{UPLOAD}-request", f"application/x-{RECEIVE}-request"):
        return GitRequest(media[len("application/x-") : -len("-request")], False, _repository(authority, segments))
    if method == "POST" and body_start and looks_like_receive_pack(body_start):
        return GitRequest(RECEIVE, False, _repository(authority, segments))
    return None


def canonical_repository(url: str) -> str:
    """``https://GitHub.com/Org/Repo.git`` -> ``github.com/org/repo`` (how the registry names repositories)."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) repository URL: {url!r}")
    try:
        host = parse_host(parts.hostname).name
    except HostError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    segments = normalise_path(parts.path)
    if not segments:
        raise ValueError(f"{url!r} names no repository path")
    return _repository(_authority(host, parts.port or (443 if parts.scheme == "https" else 80), parts.scheme), segments)


def repository_matches(pattern: str, repository: str) -> bool:
    if pattern == "**":
        return True
    return segments_match(tuple(pattern.split("/")), tuple(repository.split("/")))


# --- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GitRules:
    """The policy's git section, compiled (addon.policy.Git)."""

    fetch_repositories: tuple[str, ...] = ("**",)
    allow_other_branches: bool = False
    allow_tags: bool = False
    allow_delete: bool = False
    allow_force_push: bool = False


@dataclass(frozen=True, slots=True)
class AgentGit:
    """What the registry says about one agent's git work."""

    branch: str | None = None
    repositories: tuple[str, ...] = field(default_factory=tuple)

    def owns(self, repository: str) -> bool:
        return repository in self.repositories


def decide_request(rules: GitRules, agent: AgentGit | None, request: GitRequest) -> Decision:
    """Repository gate, before any body is read."""
    if request.service == RECEIVE:
        if agent is None or not agent.owns(request.repository):
            return block(
                "git-push-denied",
                "git:repository",
                f"pushes go only to the agent's own repositories; {request.repository} is not one of them",
            )
        return allow("git-own-repository", "git:repository")
    if agent is not None and agent.owns(request.repository):
        return allow("git-own-repository", "git:repository")
    if any(repository_matches(p, request.repository) for p in rules.fetch_repositories):
        return allow("git-fetch-allowed", "git.fetch_repositories")
    return block("git-fetch-denied", "git.fetch_repositories", f"fetching {request.repository} is not allowed by the policy")


# Proves that <new> reaches <old> through the pushed commits (addon.gitpack), or says why not.
FastForward = Callable[[str, str], str | None]


def decide_push(
    rules: GitRules,
    agent: AgentGit,
    push: Push,
    advertised: Mapping[str, str] | None,
    fast_forward: FastForward,
) -> Decision:
    """Every command must be allowed, or the whole push is refused."""
    if advertised is None:
        return block(
            "git-push-denied",
            "git:advertisement",
            "no ref advertisement (GET info/refs?service=git-receive-pack) of this repository was seen "
            "through the proxy just before this push",
        )
    problems = [p for c in push.commands if (p := _command_problem(rules, agent, c, advertised, fast_forward))]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        return block("git-push-denied", "git:" + _rule_of(problems[0]), shown)
    return allow("git-push-allowed", "git:branch")


def _rule_of(problem: str) -> str:
    return problem.split(":", 1)[1].strip().split(" ", 1)[0]


def _command_problem(rules: GitRules, agent: AgentGit, c: Command, advertised: Mapping[str, str], fast_forward: FastForward) -> str | None:
    if problem := _ref_problem(rules, agent, c.ref):
        return f"{c.ref}: {problem}"
    if c.is_delete and not rules.allow_delete:
        return f"{c.ref}: delete (deleting refs is not allowed)"
    current = advertised.get(c.ref, "0" * len(c.old))
    if c.old != current:
        return f"{c.ref}: stale (the push expects {c.old[:12]}, the server advertised {current[:12]})"
    if c.is_create or c.is_delete or rules.allow_force_push:
        return None
    why = fast_forward(c.old, c.new)
    return f"{c.ref}: force (not a fast-forward: {why})" if why else None


def _ref_problem(rules: GitRules, agent: AgentGit, ref: str) -> str | None:
    if agent.branch and ref == f"refs/heads/{agent.branch}":
        return None
    if ref.startswith("refs/tags/"):
        return None if rules.allow_tags else "tag (pushing tags is not allowed)"
    if ref.startswith("refs/heads/"):
        own = agent.branch or "none configured"
        return None if rules.allow_other_branches else f"branch (only the agent's branch {own} may be pushed)"
    return "ref (only the agent's branch may be pushed)"
