"""Requirements files for the images, exported from ``uv.lock`` at build time.

Each Python image installs exactly one dependency group (``scanner``,
``proxy``, ``sink``) with hashes, never the kit's own dependencies. The files
are generated into ``.build/`` on every build rather than checked in: the lock
is the one source of truth, so there is nothing to drift and no test needed
to catch drift. ``--locked`` makes a lock that no longer matches
``pyproject.toml`` a build error instead of a silently stale image.

The images install with ``pip --no-deps --require-hashes``: the export is the
complete closure, and ``--no-deps`` keeps pip from re-resolving llm-guard's
real (multi-gigabyte) requirements, which ``pyproject.toml`` overrides to
nothing because the scanner only uses its plugin files.

Packages whose metadata ``pyproject.toml`` overrides
(``[[tool.uv.dependency-metadata]]``) go to a second file,
``<group>-overridden.txt``, installed with ``--ignore-requires-python``: uv
resolved them with the override, and pip would otherwise enforce the package's
own metadata (llm-guard 0.3.16 declares ``Requires-Python <3.13`` because of
the heavy dependencies the scanner never installs).
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

from kit.errors import PrerequisiteError, RunError
from kit.runner import run

GROUPS = ("scanner", "proxy", "sink")


def export_argv(group: str) -> list[str]:
    if group not in GROUPS:
        raise ValueError(f"no image installs the dependency group {group!r}")
    return [
        "uv",
        "export",
        "--locked",
        "--format",
        "requirements.txt",
        "--no-emit-project",
        "--no-default-groups",
        "--only-group",
        group,
        "--no-header",
    ]


def export(group: str, project_dir: Path) -> str:
    """The hashed requirements of one dependency group, as uv exports them."""
    if shutil.which("uv") is None:
        raise PrerequisiteError("uv is not on PATH: install it (the kit's tasks run with `uv run invoke ...`)")
    try:
        text = run(export_argv(group), cwd=project_dir, echo=False).stdout
    except RunError as exc:
        raise RunError(exc.argv, exc.returncode, exc.output, "uv.lock does not match pyproject.toml? run `uv lock`") from exc
    check_hashed(group, text)
    return text


def check_hashed(group: str, text: str) -> None:
    """Every requirement must be pinned with a hash (pip --require-hashes would refuse it anyway,
    but later and less clearly)."""
    entries = _entries(text)
    if not entries:
        raise RunError(export_argv(group), 0, text, f"dependency group {group!r} exported no requirement")
    unhashed = [entry.split()[0] for entry in entries if "==" not in entry or "--hash=sha256:" not in entry]
    if unhashed:
        raise RunError(export_argv(group), 0, text, f"requirements without a pin or hash: {', '.join(unhashed)}")


def _entries(text: str) -> list[str]:
    """Requirement entries with their continuation lines joined (comments dropped)."""
    entries: list[str] = []
    for line in text.splitlines():
        stripped = line.strip().removesuffix("\\").strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace() and entries:
            entries[-1] += " " + stripped
        else:
            entries.append(stripped)
    return entries


def overridden(pyproject: Path) -> set[str]:
    """Normalised names of the packages whose metadata ``pyproject.toml`` overrides for uv."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    entries = data.get("tool", {}).get("uv", {}).get("dependency-metadata", [])
    return {normalise(entry["name"]) for entry in entries}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split(text: str, names: set[str]) -> tuple[str, str]:
    """(requirements of other packages, requirements of ``names``), comments dropped."""
    main, chosen = [], []
    for entry in _entries(text):
        name = normalise(re.split(r"[=<>!~;\s\[]", entry, maxsplit=1)[0])
        (chosen if name in names else main).append(entry)
    return "".join(e + "\n" for e in main), "".join(e + "\n" for e in chosen)


def write(group: str, project_dir: Path, build_dir: Path) -> tuple[Path, Path]:
    """``<group>.txt`` and ``<group>-overridden.txt`` (possibly empty) in ``build_dir``,
    each rewritten only when it changed."""
    main, special = split(export(group, project_dir), overridden(project_dir / "pyproject.toml"))
    build_dir.mkdir(parents=True, exist_ok=True)
    paths = (build_dir / f"{group}.txt", build_dir / f"{group}-overridden.txt")
    for path, text in zip(paths, (main, special), strict=True):
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return paths
