"""The settings file (``yolo-cage.yaml``): versioned, strict, defaults in one place.

Shape (every key optional except ``apiVersion`` and ``kind``)::

    apiVersion: yolo-cage.dev/v1alpha1
    kind: Settings
    backend: compose            # compose | kind
    project: yolo-cage          # Compose project / kind namespace
    policy: null                # a policy file; null = addon.policy's defaults
    images: {tag: local, base_image: null, base_mode: auto, extra_ca_bundle: auto}
    agents: [{name: dev, branch: null, repo: null,
              resources: {memory: 4g, cpus: 2.0, pids: 1024}}]
    backends:
      compose: {host_isolation: auto}   # auto | gateway | firewall
      kind: {cluster_name: yolo-cage, node_image: ..., calico_version: ..., calico_manifest: null}
    unsafe_allow_host_access: false

Unknown keys are errors, and every problem is reported at once, each with its
location and the offending value (like kind's config loader). The backend
sections live under ``backends:`` because ``kind:`` is the document's type.

The environment is read when :func:`load` is called, never at import time:
``YOLO_CAGE_SETTINGS`` names the file, ``YOLO_CAGE_PROJECT`` overrides
``project``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kit.errors import ConfigError

API_VERSION = "yolo-cage.dev/v1alpha1"
KIND = "Settings"
FILE_NAME = "yolo-cage.yaml"

# One DNS label, short enough to build container, network and bridge names from.
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$|^[a-z]$"
PROJECT_PATTERN = r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$"
_MEMORY = r"^[1-9][0-9]*(b|k|m|g)$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Resources(_Strict):
    memory: Annotated[str, Field(pattern=_MEMORY)] = "4g"
    cpus: Annotated[float, Field(gt=0, le=256)] = 2.0
    pids: Annotated[int, Field(ge=64, le=65536)] = 1024


class Agent(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    branch: str | None = None  # None: yolo-cage/<name>
    repo: str | None = None
    resources: Resources = Resources()

    @property
    def git_branch(self) -> str:
        return self.branch or f"yolo-cage/{self.name}"


class Images(_Strict):
    tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")] = "local"
    base_image: str | None = None  # None: the pinned default in kit.images
    base_mode: Literal["auto", "registry", "offline"] = "auto"
    extra_ca_bundle: str = "auto"  # auto | none | <path to a PEM bundle>


class ComposeBackend(_Strict):
    # auto: the engine's isolated gateway mode when it has one, else the
    # netguard firewall; "gateway" / "firewall" force one (and fail if it
    # cannot work here).
    host_isolation: Literal["auto", "gateway", "firewall"] = "auto"


class KindBackend(_Strict):
    cluster_name: Annotated[str, Field(pattern=PROJECT_PATTERN)] = "yolo-cage"
    # kind v0.27.0's image for Kubernetes 1.32.2, pinned by digest.
    node_image: Annotated[str, Field(pattern=r"^[^\s:@]+:[^\s@]+@sha256:[0-9a-f]{64}$")] = (
        "kindest/node:v1.32.2@sha256:f226345927d7e348497136874b6d207e0b32cc52154ad8323129352923a3142f"
    )
    calico_version: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")] = "v3.29.3"
    calico_manifest: str | None = None  # a path or https URL; None: the pinned version's manifest


class Backends(_Strict):
    compose: ComposeBackend = ComposeBackend()
    kind: KindBackend = KindBackend()


def _default_agents() -> list[Agent]:
    return [Agent(name="dev")]


class Settings(_Strict):
    # Populated by alias: the YAML keys are camelCase like Kubernetes objects.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    api_version: Annotated[Literal["yolo-cage.dev/v1alpha1"], Field(alias="apiVersion")]
    kind: Literal["Settings"]
    backend: Literal["compose", "kind"] = "compose"
    project: Annotated[str, Field(pattern=PROJECT_PATTERN)] = "yolo-cage"
    policy: str | None = None
    images: Images = Images()
    agents: list[Agent] = Field(default_factory=_default_agents, min_length=1, max_length=32)
    backends: Backends = Backends()
    unsafe_allow_host_access: bool = False

    @property
    def agent_names(self) -> list[str]:
        return [a.name for a in self.agents]

    def unsafe_switches(self) -> list[str]:
        """The ``unsafe_*`` switches that are on (shown by doctor and up)."""
        return [name for name in type(self).model_fields if name.startswith("unsafe_") and getattr(self, name)]


def default_path(repo_root: Path | None = None) -> Path:
    """``YOLO_CAGE_SETTINGS`` if set, else ``yolo-cage.yaml`` at the repository root."""
    env = os.environ.get("YOLO_CAGE_SETTINGS")
    if env:
        return Path(env)
    return (repo_root or Path.cwd()) / FILE_NAME


def load(path: Path | None = None, *, required: bool | None = None) -> Settings:
    """Read, check and default the settings; raise :class:`ConfigError` listing every problem.

    A missing file means "all defaults" unless it was named explicitly
    (argument or ``YOLO_CAGE_SETTINGS``), where it is an error.
    """
    explicit = path is not None or bool(os.environ.get("YOLO_CAGE_SETTINGS"))
    path = path or default_path()
    if required is None:
        required = explicit
    if not path.exists():
        if required:
            raise ConfigError(str(path), ["the settings file does not exist"])
        return from_mapping({"apiVersion": API_VERSION, "kind": KIND}, source="defaults")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {_yaml_where(exc)}"]) from exc
    return from_mapping(data, source=str(path), base_dir=path.parent)


def from_mapping(data: Any, *, source: str, base_dir: Path | None = None) -> Settings:
    """Check a parsed document; every schema and file-reference problem in one error."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, [f"the document must be a mapping, got {type(data).__name__}: {data!r}"])
    base_dir = base_dir or Path.cwd()
    problems = _header_problems(data)
    settings = None
    try:
        settings = Settings.model_validate(_with_env(dict(data)))
    except ValidationError as exc:
        problems += [p for p in _pydantic_problems(exc) if not _is_header(p)]
    problems += _duplicate_agents(data) + _reference_problems(data, base_dir)
    if problems:
        raise ConfigError(source, problems)
    assert settings is not None
    return _resolved(settings, base_dir)


def _with_env(data: dict[str, Any]) -> dict[str, Any]:
    project = os.environ.get("YOLO_CAGE_PROJECT")
    if project:
        data["project"] = project
    return data


def _header_problems(data: Mapping[str, Any]) -> list[str]:
    problems = []
    if data.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: must be {API_VERSION!r} (got {data.get('apiVersion')!r})")
    if data.get("kind") != KIND:
        problems.append(f"kind: must be {KIND!r} (got {data.get('kind')!r})")
    return problems


def _is_header(problem: str) -> bool:
    return problem.startswith(("apiVersion:", "kind:"))


def _pydantic_problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(document)"
        if err["type"] == "extra_forbidden":
            out.append(f"{where}: unknown key (value {err['input']!r})")
        elif err["type"] == "missing":
            out.append(f"{where}: required")
        elif err["type"] == "string_pattern_mismatch":
            rule = _PATTERN_RULES.get(str(err["loc"][-1]), err["msg"])
            out.append(f"{where}: {rule} (got {_short(err.get('input'))})")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            value = err.get("input")
            out.append(f"{where}: {msg} (got {_short(value)})")
    return out


_PATTERN_RULES = {
    "name": "a lowercase DNS label of 1-24 characters (a-z, 0-9, '-'), starting with a letter",
    "project": "a lowercase DNS label of 2-40 characters (a-z, 0-9, '-'), starting with a letter",
    "cluster_name": "a lowercase DNS label of 2-40 characters (a-z, 0-9, '-'), starting with a letter",
    "memory": "a size like 512m or 4g (units b, k, m, g)",
    "tag": "a Docker image tag",
    "node_image": "an image pinned by tag and digest (name:tag@sha256:<64 hex>)",
    "calico_version": "a version like v3.29.3",
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _duplicate_agents(data: Mapping[str, Any]) -> list[str]:
    agents = data.get("agents")
    if not isinstance(agents, list):
        return []
    names = [a.get("name") for a in agents if isinstance(a, Mapping) and isinstance(a.get("name"), str)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    return [f"agents: names must be unique (repeated: {', '.join(dupes)})"] if dupes else []


def _reference_problems(data: Mapping[str, Any], base_dir: Path) -> list[str]:
    """Files the settings name must exist (checked now, not half-way through `up`)."""
    problems = []
    policy = data.get("policy")
    if isinstance(policy, str) and not (base_dir / policy).is_file():
        problems.append(f"policy: no such file (got {policy!r})")
    bundle = _get(data, "images", "extra_ca_bundle")
    if isinstance(bundle, str) and bundle not in ("auto", "none") and not (base_dir / bundle).is_file():
        problems.append(f"images.extra_ca_bundle: not 'auto', 'none' or an existing file (got {bundle!r})")
    manifest = _get(data, "backends", "kind", "calico_manifest")
    if isinstance(manifest, str) and not manifest.startswith("https://") and not (base_dir / manifest).is_file():
        problems.append(f"backends.kind.calico_manifest: not an https URL or an existing file (got {manifest!r})")
    return problems


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _resolved(settings: Settings, base_dir: Path) -> Settings:
    """Relative file references become absolute (relative to the settings file)."""
    updates: dict[str, Any] = {}
    if settings.policy is not None:
        updates["policy"] = str((base_dir / settings.policy).resolve())
    bundle = settings.images.extra_ca_bundle
    if bundle not in ("auto", "none"):
        updates["images"] = settings.images.model_copy(update={"extra_ca_bundle": str((base_dir / bundle).resolve())})
    return settings.model_copy(update=updates) if updates else settings


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def example() -> str:
    """A complete settings file with every default spelled out (README, `invoke doctor`)."""
    defaults = from_mapping({"apiVersion": API_VERSION, "kind": KIND}, source="defaults")
    data = defaults.model_dump(by_alias=True, mode="json")
    ordered = {"apiVersion": data.pop("apiVersion"), "kind": data.pop("kind"), **data}
    return yaml.safe_dump(ordered, sort_keys=False)
