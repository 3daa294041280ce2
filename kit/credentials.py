"""The kit's half of the credential bindings: real values stay outside the cage.

For each binding of the policy (``credentials.bindings``) the kit reads the real
value on the host (an environment variable, or a file with an optional JSON
pointer) and hands it only to the proxy (to inject) and the scanner (to
recognise it anywhere, in any encoding). Agents get, per ``inject`` binding, a
placeholder of their own, in the variables the binding names
(``agent_env``); the registry (``agents.json``) tells the proxy whose
placeholder is whose. A required binding without a value stops `up` with every
missing one listed; an optional one is skipped with a notice.

Placeholders are kept in the state directory so a second `up` does not
recreate the agents.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kit import state
from kit.errors import ConfigError

MIN_LENGTH = 8  # the scanner does not fingerprint shorter values (they would match ordinary text)
_TOKEN = re.compile(rb"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class Resolved:
    """A binding whose real value was found on the host."""

    name: str
    mode: str  # inject | passthrough
    value: bytes = field(repr=False)
    agent_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bound:
    """What one `up` binds: the values found, and what was skipped (optional bindings without a value)."""

    resolved: tuple[Resolved, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def injected(self) -> tuple[Resolved, ...]:
        return tuple(r for r in self.resolved if r.mode == "inject")

    def files(self) -> dict[str, bytes]:
        """Real values by binding name: the proxy's and the scanner's credentials directory."""
        return {r.name: r.value + b"\n" for r in self.resolved}


def load_policy(policy_file: Path | None):
    """The policy the cage runs with (the defaults of addon/policy.py when there is no file)."""
    from addon import policy as model

    if policy_file is None:
        return model.default_policy()
    try:
        return model.load(policy_file)
    except model.PolicyError as exc:
        raise ConfigError(exc.source, exc.problems) from None


def resolve(policy, base_dir: Path | None, environ: Mapping[str, str] | None = None) -> Bound:
    """Read every binding's real value; raise ConfigError listing every required one that is missing or unusable."""
    environ = os.environ if environ is None else environ
    resolved, skipped, problems = [], [], []
    for binding in policy.credentials.bindings:
        value, why = read_source(binding.source, base_dir, environ)
        if value is not None and (bad := _unusable(value)):
            value, why = None, bad
        if value is None:
            where = describe(binding.source)
            if binding.required:
                problems.append(f"credential {binding.name}: {why} ({where})")
            else:
                skipped.append(f"{binding.name}: {why} ({where}); not bound")
            continue
        resolved.append(Resolved(binding.name, binding.mode, value, tuple(binding.agent_env)))
    if problems:
        raise ConfigError("policy credentials", problems)
    return Bound(tuple(resolved), tuple(skipped))


def describe(source) -> str:
    if source.env is not None:
        return f"environment variable {source.env}"
    return f"file {source.file}" + (f", JSON {source.json_pointer}" if source.json_pointer else "")


def read_source(source, base_dir: Path | None, environ: Mapping[str, str]) -> tuple[bytes | None, str]:
    """(value, "") or (None, why not). Never includes the value in the reason."""
    if source.env is not None:
        text = environ.get(source.env, "")
        return (text.strip().encode(), "") if text.strip() else (None, "not set or empty")
    path = Path(os.path.expanduser(source.file))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    if source.json_pointer is None:
        raw = raw.strip()
        return (raw, "") if raw else (None, f"{path} is empty")
    return _json_value(raw, source.json_pointer, path)


def _json_value(raw: bytes, pointer: str, path: Path) -> tuple[bytes | None, str]:
    try:
        node = json.loads(raw)
    except ValueError:
        return None, f"{path} is not JSON"
    for part in pointer.split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return None, f"{path} has nothing at {pointer}"
    if not isinstance(node, str) or not node.strip():
        return None, f"{path} has no string at {pointer}"
    return node.strip().encode(), ""


def _unusable(value: bytes) -> str:
    if not _TOKEN.match(value):
        return "the value is not a single printable ASCII token (it must fit in one header value)"
    if len(value) < MIN_LENGTH:
        return f"the value is shorter than {MIN_LENGTH} characters (the scanner could not recognise it)"
    return ""


# --- placeholders ----------------------------------------------------------------------------------


def record(project: str, bound: Bound) -> None:
    """Remember which inject bindings this `up` bound (names and variables, never values): later
    plans (`down`, `agent.new`) give agents the same placeholders without reading the values again."""
    doc = [{"name": r.name, "agent_env": list(r.agent_env)} for r in bound.injected]
    path = state.project_dir(project) / "rendered" / "credentials.json"
    data = (json.dumps(doc, indent=2) + "\n").encode()
    if not path.exists() or state.read_private(path) != data:
        state.write_private(path, data)


def for_agents(project: str, agents: Sequence[str], *, create: bool = True) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(agent -> {binding: placeholder}, agent -> {variable: placeholder}) for the bindings recorded
    by the last `up`. A placeholder is made once per agent and binding, then kept."""
    from addon.credentials import is_placeholder, new_placeholder

    base = state.project_dir(project, create=False) / "rendered"
    bindings = _read_json(base / "credentials.json", [])
    known: dict[str, dict[str, str]] = _read_json(base / "placeholders.json", {})
    placeholders: dict[str, dict[str, str]] = {}
    env: dict[str, dict[str, str]] = {}
    made = False
    for agent in agents:
        mine, placeholders[agent], env[agent] = known.get(agent, {}), {}, {}
        for binding in bindings:
            name = binding["name"]
            current = mine.get(name, "")
            if not (is_placeholder(current) and current.startswith(f"yolo-cage-placeholder-{name}-")):
                if not create:
                    continue
                current, made = new_placeholder(name), True
            placeholders[agent][name] = current
            env[agent].update({var: current for var in binding["agent_env"]})
    if made:
        _write_placeholders(project, {**known, **{a: {**known.get(a, {}), **p} for a, p in placeholders.items()}})
    return placeholders, env


def forget(project: str, agent: str) -> None:
    """Drop an agent's placeholders (`agent.rm`): a later agent of that name gets new ones."""
    path = state.project_dir(project, create=False) / "rendered" / "placeholders.json"
    known = _read_json(path, {})
    if agent in known:
        del known[agent]
        _write_placeholders(project, known)


def _write_placeholders(project: str, doc: dict[str, dict[str, str]]) -> None:
    path = state.project_dir(project) / "rendered" / "placeholders.json"
    state.write_private(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def forget(project: str, agent: str) -> None:
    """Drop an agent's placeholders (`agent.rm`): an agent made again under that name gets new ones."""
    path = state.project_dir(project) / "rendered" / "placeholders.json"
    known = _read_json(path, {})
    if known.pop(agent, None) is not None:
        state.write_private(path, (json.dumps(known, indent=2, sort_keys=True) + "\n").encode())


def _read_json(path: Path, default):
    return json.loads(state.read_private(path)) if path.exists() else default


def git_fields(branch: str, repo: str | None) -> dict[str, object]:
    """The registry's git binding for an agent: its branch and, for an http(s) repository, its canonical name
    (an SSH repository counts as its https form: the agent's origin, kit/agents_repo.py)."""
    from addon.gitsmart import canonical_repository
    from kit import agents_repo

    repositories = []
    web = agents_repo.parse(repo).web_url if repo else None
    if web:
        try:
            repositories.append(canonical_repository(web))
        except ValueError as exc:
            raise ConfigError("settings", [f"agents[].repo: {exc}"]) from None
    return {"branch": branch, "repositories": repositories}
