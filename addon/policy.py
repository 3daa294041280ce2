"""The proxy policy file: model, defaults (all of them, here), loading and checking.

``apiVersion: yolo-cage.dev/v1alpha1``, ``kind: Policy``. Strict like kind's
config: unknown keys are errors, every problem is reported at once with its
location and the offending value, and anything that loosens isolation is named
``unsafe_*`` (refused by ``invoke policy.check --production``).

YAML is read with YAML 1.2 scalars: only ``true``/``false`` are booleans (so
``mode: off`` stays the string "off") and only plain decimals are integers
(``ports: [0443]`` is an error, not octal 291). Duplicate keys are errors.

Pure: imports nothing from mitmproxy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from addon.hostnames import HostError, matches, parse_host

API_VERSION = "yolo-cage.dev/v1alpha1"
KIND = "Policy"

# The seed's paste and file-sharing sites: always blocked (with subdomains),
# whatever the policy adds.
SEED_BLOCKLIST: tuple[str, ...] = (
    "pastebin.com",
    "paste.ee",
    "hastebin.com",
    "dpaste.org",
    "file.io",
    "transfer.sh",
    "0x0.st",
    "ix.io",
    "sprunge.us",
    "termbin.com",
)

GITHUB_API_HOST = "api.github.com"
MiB = 1024 * 1024

ScanMode = Literal["enforce", "report", "off"]


class PolicyError(ValueError):
    """A policy file is invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


# --- field types ---------------------------------------------------------------


def _host_pattern(value: str) -> str:
    try:
        host = parse_host(value)
    except HostError as exc:
        raise ValueError(str(exc)) from None
    if host.is_ip:
        raise ValueError("an IP address is not a host pattern (IP literals are governed by unsafe_allow_ip_literals)")
    return host.name


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _cidr(value: object) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError("a network in CIDR notation, as a string")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"not a network in CIDR notation: {exc}") from None


def _ip(value: object) -> IPAddress:
    if not isinstance(value, str):
        raise ValueError("an IP address, as a string")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("not an IP address in canonical notation") from None


_METHOD = re.compile(r"^[A-Z]+$")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_PATH_PATTERN = re.compile(r"^/[^?#\s]*$")


def _method(value: str) -> str:
    if not _METHOD.match(value):
        raise ValueError("an HTTP method in capitals, e.g. DELETE")
    return value


def _rule_id(value: str) -> str:
    if not _RULE_ID.match(value):
        raise ValueError("lower-case letters, digits, '.' and '-' (at most 63)")
    return value


def _path_pattern(value: str) -> str:
    if not _PATH_PATTERN.match(value):
        raise ValueError("a path starting with '/', no query or fragment; '*' is one segment, '**' any number")
    return value


HostPattern = Annotated[StrictStr, AfterValidator(_host_pattern)]
Cidr = Annotated[IPNetwork, PlainValidator(_cidr)]
IPText = Annotated[IPAddress, PlainValidator(_ip)]
Method = Annotated[StrictStr, AfterValidator(_method)]
RuleId = Annotated[StrictStr, AfterValidator(_rule_id)]
PathPattern = Annotated[StrictStr, AfterValidator(_path_pattern)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections -------------------------------------------------------------------


class Destinations(_Strict):
    """Where requests may go. Deny wins: the seed blocklist applies in every mode."""

    mode: Literal["blocklist", "allowlist"] = "blocklist"
    blocklist: tuple[HostPattern, ...] = ()  # added to SEED_BLOCKLIST
    allowlist: tuple[HostPattern, ...] = ()  # the only destinations in allowlist mode
    ports: tuple[Port, ...] = (80, 443)
    resolve_timeout_ms: Annotated[StrictInt, Field(ge=50, le=60_000)] = 5_000
    unsafe_allow_ip_literals: StrictBool = False
    unsafe_allow_raw_tunnels: StrictBool = False
    # Test cages only: their "internet" is a Docker network or loopback.
    unsafe_allow_private_networks: tuple[Cidr, ...] = ()
    # Test cages only: answer these names without DNS (a local stand-in for a real site).
    unsafe_host_overrides: Mapping[HostPattern, IPText] = Field(default_factory=dict)

    @property
    def blocked_hosts(self) -> tuple[str, ...]:
        return SEED_BLOCKLIST + self.blocklist


class ScanTarget(_Strict):
    hosts: Annotated[tuple[HostPattern, ...], Field(min_length=1)]
    mode: ScanMode


class Scan(_Strict):
    """Content scanning through the scanner service (fail closed unless unsafe_fail_open)."""

    mode: ScanMode = "enforce"
    destinations: tuple[ScanTarget, ...] = ()  # first match wins; hosts match with subdomains
    deadline_ms: Annotated[StrictInt, Field(ge=10, le=600_000)] = 10_000
    max_body_bytes: Annotated[StrictInt, Field(ge=0, le=1024 * MiB)] = 16 * MiB  # the scanner's default limit too
    unsafe_fail_open: StrictBool = False

    def mode_for(self, host: str) -> ScanMode:
        for target in self.destinations:
            if any(matches(host, pattern) for pattern in target.hosts):
                return target.mode
        return self.mode


class DenyRule(_Strict):
    id: RuleId
    hosts: Annotated[tuple[HostPattern, ...], Field(min_length=1)]
    methods: tuple[Method, ...] = ()  # empty: every method
    paths: Annotated[tuple[PathPattern, ...], Field(min_length=1)]
    detail: StrictStr = ""


class Rules(_Strict):
    """Method + path rules per host. The GitHub API set applies to api.github.com."""

    # Every other method is refused: a made-up method name is a channel the scanner does not read.
    methods: Annotated[tuple[Method, ...], Field(min_length=1)] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    # GitHub Enterprise Server hosts: the same set under /api/v3 (and /api/graphql).
    github_enterprise_hosts: tuple[HostPattern, ...] = ()
    unsafe_disable_github_defaults: StrictBool = False
    deny: tuple[DenyRule, ...] = ()


# --- credentials (bindings) and git ---------------------------------------------------

_BINDING_NAME = re.compile(r"^[a-z][a-z0-9-]{0,47}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,31}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_REPO_PATTERN = re.compile(r"^(\*\*|[a-z0-9*][a-z0-9.:*-]*(/[a-z0-9_.*-]+)*)$")
# Headers a credential may never be placed in: they frame or route the request,
# or belong to the proxy.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
     "proxy-authorization", "proxy-connection", "keep-alive", "cookie"}
)  # fmt: skip


def _binding_name(value: str) -> str:
    if not _BINDING_NAME.match(value):
        raise ValueError("a lower-case name: letters, digits and '-', starting with a letter (at most 48)")
    return value


def _header_name(value: str) -> str:
    if not _HEADER_NAME.match(value):
        raise ValueError("an HTTP header name")
    if value.lower() in _RESERVED_HEADERS:
        raise ValueError(f"{value} frames or routes the request; a credential cannot be placed there")
    return value


def _scheme(value: str) -> str:
    if not _SCHEME.match(value):
        raise ValueError("an HTTP auth scheme such as Bearer, Basic or token")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError("an environment variable name (letters, digits, '_')")
    return value


def _repo_pattern(value: str) -> str:
    if not _REPO_PATTERN.match(value):
        raise ValueError("host/owner/name in lower case; '*' is one segment, '**' alone is every repository")
    return value


BindingName = Annotated[StrictStr, AfterValidator(_binding_name)]
HeaderName = Annotated[StrictStr, AfterValidator(_header_name)]
Scheme = Annotated[StrictStr, AfterValidator(_scheme)]
EnvName = Annotated[StrictStr, AfterValidator(_env_name)]
RepoPattern = Annotated[StrictStr, AfterValidator(_repo_pattern)]


class CredentialSource(_Strict):
    """Where the kit finds the real value on the host. The proxy never reads this:
    it gets the value as a file (``/run/yolo-cage/credentials/<name>``)."""

    env: EnvName | None = None
    # ~ is expanded; a relative path is relative to the policy file.
    file: Annotated[StrictStr, Field(min_length=1)] | None = None
    # RFC 6901 pointer into a JSON file, e.g. /claudeAiOauth/accessToken.
    json_pointer: Annotated[StrictStr, Field(pattern=r"^(/[^/]*)+$")] | None = None

    @model_validator(mode="after")
    def _one_place(self) -> CredentialSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("exactly one of env or file")
        if self.json_pointer is not None and self.file is None:
            raise ValueError("json_pointer needs file")
        return self


class Placement(_Strict):
    """One place a credential may appear: a header, with an auth scheme or as the whole value."""

    header: HeaderName
    scheme: Scheme | None = None  # None: the header's whole value is the credential
    username: Annotated[StrictStr, Field(pattern=r"^[^:\s]{1,64}$")] | None = None  # Basic only
    hosts: tuple[HostPattern, ...] = ()  # narrows the binding's hosts; empty: all of them
    paths: tuple[PathPattern, ...] = ()  # where the credential may be sent; empty: any path

    @model_validator(mode="after")
    def _basic_needs_user(self) -> Placement:
        basic = (self.scheme or "").lower() == "basic"
        if basic and self.username is None:
            raise ValueError("scheme Basic needs username (the real value is the password)")
        if not basic and self.username is not None:
            raise ValueError("username is only for scheme Basic")
        return self


BindingMode = Literal["inject", "passthrough"]


class Binding(_Strict):
    """A credential bound to its hosts and places. Fields left out come from ``preset``.

    ``inject``: the agent holds a placeholder, the proxy swaps in the real value
    on matching requests (after the scan). ``passthrough`` (the weaker mode): the
    agent holds the real value itself; it is allowed only in its places on its
    hosts and blocked everywhere else as a registered fingerprint.
    """

    name: BindingName
    preset: Literal["anthropic-api-key", "github-token", "claude-oauth"] | None = None
    mode: BindingMode | None = None
    source: CredentialSource | None = None
    hosts: tuple[HostPattern, ...] | None = None
    where: tuple[Placement, ...] | None = None
    # On the binding's hosts, the headers of `where` and these may carry nothing but a
    # bound credential in its place: anything else there (an attacker's own key, which
    # would open another account) is credential-foreign.
    exclusive_headers: tuple[HeaderName, ...] = ()
    agent_env: tuple[EnvName, ...] = ()  # variables holding the placeholder in the agents
    required: StrictBool = True  # false: skipped (with a notice) when the source has no value

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in PRESETS:
            return {**PRESETS[data["preset"]], **data}
        if isinstance(data, dict) and "preset" not in data:
            return {"mode": "inject", **data}
        return data

    @model_validator(mode="after")
    def _complete(self) -> Binding:
        missing = [k for k in ("mode", "source", "hosts", "where") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} required (or a preset that gives them)")
        if not self.hosts or not self.where:
            raise ValueError("hosts and where must not be empty")
        if self.mode == "passthrough" and self.agent_env:
            raise ValueError("agent_env is for inject mode (a passthrough credential has no placeholder)")
        return self


_GIT_PATHS = ("/*/*/info/refs", "/*/*/git-upload-pack", "/*/*/git-receive-pack")

# Ready-made bindings. Claude Code reads ANTHROPIC_API_KEY and sends it as
# x-api-key; git sends Basic x-access-token:<token> after a 401 (the agent
# image's credential helper answers with $GH_TOKEN); the REST API takes Bearer
# or token. claude-oauth is the weaker subscription-login mode (README).
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "anthropic-api-key": {
        "mode": "inject",
        "source": CredentialSource(env="ANTHROPIC_API_KEY"),
        "hosts": ("api.anthropic.com",),
        "where": (Placement(header="x-api-key"),),
        "exclusive_headers": ("Authorization",),  # the API also takes OAuth tokens as Bearer
        "agent_env": ("ANTHROPIC_API_KEY",),
    },
    "github-token": {
        "mode": "inject",
        "source": CredentialSource(env="GITHUB_TOKEN"),
        "hosts": ("github.com", GITHUB_API_HOST),
        "where": (
            Placement(header="Authorization", scheme="Basic", username="x-access-token", hosts=("github.com",), paths=_GIT_PATHS),
            Placement(header="Authorization", scheme="Bearer", hosts=(GITHUB_API_HOST,)),
            Placement(header="Authorization", scheme="token", hosts=(GITHUB_API_HOST,)),
        ),
        "agent_env": ("GH_TOKEN", "GITHUB_TOKEN"),
    },
    "claude-oauth": {
        "mode": "passthrough",
        "source": CredentialSource(file="~/.claude/.credentials.json", json_pointer="/claudeAiOauth/accessToken"),
        "hosts": ("api.anthropic.com",),
        "where": (Placement(header="Authorization", scheme="Bearer"),),
        "exclusive_headers": ("x-api-key",),  # the API also takes keys
    },
}


def _default_bindings() -> tuple[Binding, ...]:
    # Bound when the host has the value, skipped otherwise: the real key never
    # enters the cage either way.
    return (
        Binding(name="anthropic-api-key", preset="anthropic-api-key", required=False),
        Binding(name="github-token", preset="github-token", required=False),
    )


class Credentials(_Strict):
    bindings: tuple[Binding, ...] = Field(default_factory=_default_bindings)

    @model_validator(mode="after")
    def _unique(self) -> Credentials:
        names = [b.name for b in self.bindings]
        envs = [e for b in self.bindings for e in b.agent_env]
        problems = [f"binding name {n!r} used twice" for n in sorted({n for n in names if names.count(n) > 1})]
        problems += [f"agent_env {e!r} set by two bindings" for e in sorted({e for e in envs if envs.count(e) > 1})]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def binding(self, name: str) -> Binding | None:
        return next((b for b in self.bindings if b.name == name), None)


class Git(_Strict):
    """Git smart HTTP, on every host: pushes only to the agent's repositories and its own branch."""

    # Repositories any agent may fetch or clone (host/owner/name; '*' one
    # segment, '**' alone: all). An agent's own repositories always may.
    fetch_repositories: tuple[RepoPattern, ...] = ("**",)
    unsafe_allow_other_branches: StrictBool = False
    unsafe_allow_tags: StrictBool = False
    unsafe_allow_delete: StrictBool = False
    # Without it an update of the agent's branch must be a fast-forward proven
    # from the pushed pack (README, "Git").
    unsafe_allow_force_push: StrictBool = False


class Policy(_Strict):
    apiVersion: Literal["yolo-cage.dev/v1alpha1"]
    kind: Literal["Policy"]
    destinations: Destinations = Field(default_factory=Destinations)
    scan: Scan = Field(default_factory=Scan)
    rules: Rules = Field(default_factory=Rules)
    credentials: Credentials = Field(default_factory=Credentials)
    git: Git = Field(default_factory=Git)


def default_policy() -> Policy:
    return Policy(apiVersion=API_VERSION, kind=KIND)


# --- the GitHub API set -----------------------------------------------------------

_WRITE = ("POST", "PUT", "PATCH", "DELETE")

# (id, methods, paths, why). Paths are relative to the API root. "*" is one
# segment, "**" any number (branch names may contain '/').
GITHUB_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str], ...] = (
    ("github.merge-pull-request", ("PUT",), ("/repos/*/*/pulls/*/merge",), "merging a pull request"),
    ("github.merge-branch", ("POST",), ("/repos/*/*/merges", "/repos/*/*/merge-upstream"), "merging branches"),
    ("github.delete-repository", ("DELETE",), ("/repos/*/*",), "deleting a repository"),
    ("github.transfer-repository", ("POST",), ("/repos/*/*/transfer",), "transferring a repository"),
    ("github.delete-organization", ("DELETE",), ("/orgs/*",), "deleting an organization"),
    (
        "github.delete-user",
        ("DELETE",),
        ("/users/*", "/user", "/admin/users/*", "/admin/organizations/*"),
        "deleting a user or organization",
    ),
    (
        "github.secrets",
        (),
        (
            "/repos/*/*/actions/secrets/**",
            "/repos/*/*/environments/*/secrets/**",
            "/repos/*/*/dependabot/secrets/**",
            "/repos/*/*/codespaces/secrets/**",
            "/orgs/*/actions/secrets/**",
            "/orgs/*/dependabot/secrets/**",
            "/orgs/*/codespaces/secrets/**",
            "/user/codespaces/secrets/**",
            "/repos/*/*/actions/variables/**",
            "/repos/*/*/environments/*/variables/**",
            "/orgs/*/actions/variables/**",
        ),
        "reading or writing Actions, Dependabot or Codespaces secrets and variables",
    ),
    (
        "github.repository-settings",
        ("PATCH",),
        ("/repos/*/*", "/orgs/*"),
        "editing repository or organization settings",
    ),
    (
        "github.repository-settings",
        _WRITE,
        (
            "/repos/*/*/actions/permissions/**",
            "/repos/*/*/keys/**",
            "/repos/*/*/rulesets/**",
            "/repos/*/*/environments/**",
            "/repos/*/*/pages/**",
            "/repos/*/*/vulnerability-alerts",
            "/repos/*/*/automated-security-fixes",
            "/repos/*/*/private-vulnerability-reporting",
            "/orgs/*/rulesets/**",
            "/orgs/*/actions/permissions/**",
        ),
        "editing repository settings (deploy keys, rulesets, environments, Actions permissions)",
    ),
    (
        "github.collaborators",
        _WRITE,
        (
            "/repos/*/*/collaborators/**",
            "/repos/*/*/invitations/**",
            "/orgs/*/members/**",
            "/orgs/*/memberships/**",
            "/orgs/*/outside_collaborators/**",
            "/orgs/*/invitations/**",
            "/orgs/*/teams/**",
            "/teams/**",
        ),
        "changing collaborators, members or teams",
    ),
    ("github.webhooks", _WRITE, ("/repos/*/*/hooks/**", "/orgs/*/hooks/**"), "creating, editing or deleting webhooks"),
    (
        "github.branch-protection",
        _WRITE,
        ("/repos/*/*/branches/**/protection/**", "/repos/*/*/branches/**/rename"),
        "changing branch protection",
    ),
    # Branch updates go through git, where the branch binding applies (addon.gitsmart):
    # the API's ways to write refs or commits would go around it.
    (
        "github.refs",
        _WRITE,
        (
            "/repos/*/*/git/refs/**",
            "/repos/*/*/contents/**",
            "/repos/*/*/releases/**",
            "/repos/*/*/pulls/*/update-branch",
        ),
        "writing refs, commits, tags or releases through the API (push with git to the agent's own branch)",
    ),
)

# GraphQL mutations with the same effects as the REST rules above.
GITHUB_GRAPHQL_MUTATIONS: frozenset[str] = frozenset(
    {
        "mergePullRequest",
        "enablePullRequestAutoMerge",
        "mergeBranch",
        "updateRepository",
        "archiveRepository",
        "transferRepository",
        "deleteRepository",
        "createBranchProtectionRule",
        "updateBranchProtectionRule",
        "deleteBranchProtectionRule",
        "createRepositoryRuleset",
        "updateRepositoryRuleset",
        "deleteRepositoryRuleset",
        "deleteEnvironment",
        "updateEnvironment",
        "addOrganizationMember",
        "updateTeamsRepository",
        "inviteEnterpriseAdmin",
        "updateEnterpriseOrganizationProjectsSetting",
        "deleteRef",
        "updateRef",
        "updateRefs",
        "createRef",
        "createCommitOnBranch",
        "updatePullRequestBranch",
    }
)


# --- loading ----------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and integers, recording duplicate keys."""

    duplicates: list[str]


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            loader.duplicates.append(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        if err["type"] == "extra_forbidden":
            problems.append(f"{_location(loc)}: unknown key (value {err['input']!r})")
        elif err["type"] == "missing":
            problems.append(f"{_location(loc)}: required")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_location(loc)}: {msg} (got {err['input']!r})")
    return problems


def parse(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate policy YAML; raise :class:`PolicyError` listing every problem."""
    loader = _Loader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    problems = list(loader.duplicates)
    if not isinstance(data, dict):
        raise PolicyError(source, problems + ["the file must be a mapping with apiVersion and kind"])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems += _problems(exc)
        policy = None
    if problems or policy is None:
        raise PolicyError(source, problems)
    return policy


def load(path: str | Path) -> Policy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise PolicyError(str(path), [f"not UTF-8 text: {exc}"]) from None
    return parse(text, str(path))


def loosening(policy: Policy) -> list[str]:
    """Every setting that loosens isolation, as 'location: value' (empty in production)."""
    found = []
    for section_name in ("destinations", "scan", "rules", "git"):
        section = getattr(policy, section_name)
        for name in type(section).model_fields:
            value = getattr(section, name)
            if name.startswith("unsafe_") and value:
                found.append(f"{section_name}.{name}: {_show(value)}")
    if policy.scan.mode == "off":
        found.append("scan.mode: off")
    for i, target in enumerate(policy.scan.destinations):
        if target.mode == "off":
            found.append(f"scan.destinations[{i}].mode: off (hosts {', '.join(target.hosts)})")
    return found


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def check(path: str | Path, production: bool = False) -> Policy:
    """Load ``path``; with ``production``, also refuse every loosening setting."""
    policy = load(path)
    if production and (unsafe := loosening(policy)):
        raise PolicyError(str(path), [f"{item} (not allowed with --production)" for item in unsafe])
    return policy


def summary(policy: Policy) -> str:
    """One paragraph a person can check at a glance."""
    d, s = policy.destinations, policy.scan
    modes = ", ".join(f"{','.join(t.hosts)}={t.mode}" for t in s.destinations) or "none"
    lines = [
        f"destinations: {d.mode}, {len(d.blocked_hosts)} blocked hosts"
        + (f", {len(d.allowlist)} allowed hosts" if d.mode == "allowlist" else "")
        + f", ports {', '.join(str(p) for p in d.ports)}",
        f"scan: {s.mode} by default (per destination: {modes}), deadline {s.deadline_ms} ms, body limit {s.max_body_bytes} bytes",
        f"rules: GitHub API set {'OFF' if policy.rules.unsafe_disable_github_defaults else 'on'}, {len(policy.rules.deny)} custom",
        "credentials: "
        + (", ".join(f"{b.name} ({b.mode}, {', '.join(b.hosts or ())})" for b in policy.credentials.bindings) or "none"),
        f"git: pushes only to each agent's repositories and branch; fetch from {', '.join(policy.git.fetch_repositories) or 'own only'}",
    ]
    return "\n".join(lines)
