"""Agent identity: who is asking, proven by a proxy credential.

Each agent reaches the proxy as ``http://<agent>:<token>@proxy:8080``. The
registry file (JSON, written by the kit) holds, per agent, the SHA-256 of its
token and optionally the networks its requests must come from:

    {"alice": {"token_sha256": "<64 hex>", "networks": ["172.30.1.0/24"],
               "branch": "yolo-cage/alice", "repositories": ["github.com/acme/app"],
               "credentials": {"github-token": "yolo-cage-placeholder-github-token-<24 hex>"}}}

``branch`` and ``repositories`` bind its git pushes (addon.gitsmart);
``credentials`` holds its placeholder per credential binding (addon.credentials).
Tokens are never stored in clear. The file is re-read when it changes; a file
that turns invalid or disappears denies every request until it is fixed
(fail closed), rather than keeping a stale list of agents.

Pure decisions; file I/O only in :class:`RegistryFile`. Nothing from mitmproxy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from addon.addresses import IPNetwork, effective
from addon.credentials import is_placeholder
from addon.decision import Decision, block
from addon.gitsmart import canonical_repository, check_branch

_AGENT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = {"token_sha256", "networks", "branch", "repositories", "credentials"}
_DUMMY = bytes(32)


class RegistryError(ValueError):
    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s): " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Agent:
    name: str
    token_sha256: bytes
    networks: tuple[IPNetwork, ...] = ()
    branch: str | None = None
    repositories: tuple[str, ...] = ()  # canonical host/owner/name (gitsmart.canonical_repository)
    credentials: Mapping[str, str] = field(default_factory=dict)  # binding name -> placeholder


@dataclass(frozen=True, slots=True)
class Registry:
    agents: Mapping[str, Agent] = field(default_factory=dict)


def hash_token(token: str) -> str:
    """The registry's form of a token (hex SHA-256 of its UTF-8 bytes)."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_registry(text: str, source: str = "<agents>") -> Registry:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RegistryError(source, [f"not valid JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise RegistryError(source, ["must be a JSON object mapping agent names to entries"])
    problems: list[str] = []
    agents = {}
    for name, entry in data.items():
        agent = _agent(name, entry, problems)
        if agent:
            agents[name] = agent
    problems += _shared_placeholders(agents.values())
    if problems:
        raise RegistryError(source, problems)
    return Registry(agents)


def _agent(name: str, entry: object, problems: list[str]) -> Agent | None:
    start = len(problems)
    if not _AGENT.match(name):
        problems.append(f"{name!r}: agent names are lower-case letters, digits, '.', '_' and '-'")
    if not isinstance(entry, dict):
        problems.append(f"{name}: must be an object with token_sha256 (got {entry!r})")
        return None
    for key in sorted(set(entry) - _KEYS):
        problems.append(f"{name}.{key}: unknown key")
    digest = entry.get("token_sha256")
    if not (isinstance(digest, str) and _SHA256.match(digest)):
        problems.append(f"{name}.token_sha256: 64 lower-case hex digits required (got {digest!r})")
    networks = _networks(name, entry.get("networks", []), problems)
    branch = _branch(name, entry.get("branch"), problems)
    repositories = _repositories(name, entry.get("repositories", []), problems)
    placeholders = _placeholders(name, entry.get("credentials", {}), problems)
    if len(problems) > start:
        return None
    return Agent(name, bytes.fromhex(digest), networks, branch, repositories, placeholders)  # type: ignore[arg-type]


def _branch(name: str, value: object, problems: list[str]) -> str | None:
    if value is None:
        return None
    why = check_branch(value) if isinstance(value, str) else "not a string"
    if why:
        problems.append(f"{name}.branch: not a git branch name: {why} (got {value!r})")
        return None
    return value  # type: ignore[return-value]


def _repositories(name: str, value: object, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        problems.append(f"{name}.repositories: a list of host/owner/name strings (got {value!r})")
        return ()
    out = []
    for i, item in enumerate(value):
        canonical = _canonical(item)
        if canonical is None or canonical != item:
            problems.append(f"{name}.repositories[{i}]: canonical host/owner/name in lower case, e.g. github.com/acme/app (got {item!r})")
        else:
            out.append(canonical)
    return tuple(out)


def _canonical(item: object) -> str | None:
    if not isinstance(item, str):
        return None
    try:
        return canonical_repository(item)
    except ValueError:
        return None


def _placeholders(name: str, value: object, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append(f"{name}.credentials: an object mapping credential names to placeholders (got {value!r})")
        return {}
    out = {}
    for binding, placeholder in value.items():
        if not (isinstance(placeholder, str) and is_placeholder(placeholder) and f"-{binding}-" in placeholder):
            problems.append(f"{name}.credentials.{binding}: a placeholder yolo-cage-placeholder-{binding}-<24 hex> (got {placeholder!r})")
        else:
            out[binding] = placeholder
    return out


def _shared_placeholders(agents: Iterable[Agent]) -> list[str]:
    owners: dict[str, str] = {}
    problems = []
    for agent in agents:
        for placeholder in agent.credentials.values():
            if placeholder in owners:
                problems.append(f"{agent.name}: shares a placeholder with {owners[placeholder]} (each agent needs its own)")
            owners[placeholder] = agent.name
    return problems


def _networks(name: str, value: object, problems: list[str]) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        problems.append(f"{name}.networks: a list of CIDR strings (got {value!r})")
        return ()
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            problems.append(f"{name}.networks[{i}]: a CIDR string (got {item!r})")
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=True))
        except (TypeError, ValueError) as exc:
            problems.append(f"{name}.networks[{i}]: not a network in CIDR notation ({exc}; got {item!r})")
    return tuple(out)


def _credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    agent, sep, token = decoded.partition(":")
    return (agent, token) if sep and agent and token else None


AUTH_REQUIRED = "proxy-auth-required"
AUTH_INVALID = "proxy-auth-invalid"
AUTH_NETWORK = "proxy-auth-network"


def authenticate(registry: Registry, header: str | None, client_ip: str) -> tuple[str, None] | tuple[None, Decision]:
    """(agent, None) when the Proxy-Authorization value proves an agent, else (None, refusal)."""
    if not header:
        return None, block(AUTH_REQUIRED, "identity", "this proxy needs the agent's credential (Proxy-Authorization)", 407)
    creds = _credentials(header)
    if creds is None:
        return None, block(AUTH_INVALID, "identity", "the proxy credential is not Basic <agent>:<token>", 407)
    name, token = creds
    agent = registry.agents.get(name)
    expected = agent.token_sha256 if agent else _DUMMY
    # Compare even for unknown agents, so timing does not tell which names exist.
    if not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), expected) or agent is None:
        return None, block(AUTH_INVALID, "identity", "unknown agent or wrong token", 407)
    if agent.networks and not _inside(client_ip, agent.networks):
        return None, block(AUTH_NETWORK, f"identity:{name}", f"agent {name!r} may not connect from this address")
    return name, None


def _inside(client_ip: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = effective(ipaddress.ip_address(client_ip.split("%", 1)[0]))
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


class RegistryFile:
    """The registry at ``path``, re-read when the file changes (checked at most once a second).

    ``current()`` returns the registry, or the problem that makes every request
    fail (missing file, invalid content) as a string.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic, interval: float = 1.0):
        self.path = path
        self._clock = clock
        self._interval = interval
        self._checked = float("-inf")
        self._signature: tuple[int, int, int] | None = None
        self._state: Registry | str = "not loaded yet"

    def current(self) -> Registry | str:
        now = self._clock()
        if now - self._checked >= self._interval:
            self._checked = now
            self._refresh()
        return self._state

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._signature, self._state = None, f"agent registry {self.path} unreadable: {exc.strerror}"
            return
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            with open(self.path, encoding="utf-8") as fh:
                self._state = parse_registry(fh.read(), self.path)
        except (OSError, UnicodeDecodeError) as exc:
            self._state = f"agent registry {self.path} unreadable: {exc}"
        except RegistryError as exc:
            self._state = str(exc)
