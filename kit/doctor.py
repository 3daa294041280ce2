"""`invoke doctor`: every missing prerequisite at once, each with how to fix it.

Checks are small functions returning a :class:`Check`; none stops the others.
A failed check makes the whole run fail (`up` and `test` run the same checks
first); warnings are printed and do not.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kit import console, hostguard, settings as settings_mod
from kit.errors import CageError, PrerequisiteError, RunError
from kit.runner import run

COMPOSE_MIN = (2, 24, 4)  # `!reset` / `!override` in the overlays
ENGINE_MIN = (20, 10)
DISK_MIN_GIB = 6.0  # images (~3 GiB) plus build cache and the offline base
DISK_WARN_GIB = 15.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Context:
    """What several checks share, read once."""

    settings: settings_mod.Settings | None
    settings_error: str | None
    engine: hostguard.Engine | None
    engine_error: str | None
    docker_root: str | None


def run_checks(ctx: Context, checks: list[Callable[[Context], Check]] | None = None) -> list[Check]:
    out = []
    for check in checks or ALL_CHECKS:
        try:
            out.append(check(ctx))
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            out.append(Check(check.__name__.removeprefix("check_"), "fail", f"the check itself failed: {exc}"))
    return out


def context(settings_path: Path | None = None) -> Context:
    settings, settings_error = None, None
    try:
        settings = settings_mod.load(settings_path)
    except CageError as exc:
        settings_error = str(exc)
    engine, engine_error, docker_root = None, None, None
    try:
        from kit.compose import docker_client, engine_of

        client = docker_client()
        engine = engine_of(client)
        docker_root = client.info().get("DockerRootDir")
    except CageError as exc:
        engine_error = str(exc)
    return Context(settings, settings_error, engine, engine_error, docker_root)


# --- the checks ----------------------------------------------------------------------


def check_python(ctx: Context) -> Check:
    ok = sys.version_info >= (3, 12)
    found = ".".join(map(str, sys.version_info[:3]))
    return Check("python", "ok" if ok else "fail", f"Python {found}", "" if ok else "install Python >= 3.12 (uv uses it)")


def check_settings(ctx: Context) -> Check:
    if ctx.settings_error:
        return Check("settings", "fail", ctx.settings_error, "fix the problems listed (see README, Configuration)")
    assert ctx.settings is not None
    unsafe = ctx.settings.unsafe_switches()
    path = settings_mod.default_path()
    where = f"{path}: valid" if path.exists() else f"no {path.name}, the defaults apply"
    if unsafe:
        return Check("settings", "warn", f"{where}, with unsafe switches on: {', '.join(unsafe)}")
    return Check("settings", "ok", f"{where} (backend {ctx.settings.backend}, project {ctx.settings.project})")


def check_policy(ctx: Context) -> Check:
    from addon import policy as policy_model

    path = ctx.settings.policy if ctx.settings else None
    if not path:
        return Check("policy", "ok", "the defaults of addon/policy.py")
    try:
        checked = policy_model.load(path)
    except policy_model.PolicyError as exc:
        return Check("policy", "fail", str(exc), "fix the policy file")
    loose = policy_model.loosening(checked)
    if loose:
        return Check("policy", "warn", f"{path}: valid, loosens isolation: {'; '.join(loose)}")
    return Check("policy", "ok", f"{path}: valid")


def check_docker_engine(ctx: Context) -> Check:
    if ctx.engine is None:
        fix = "install Docker (Debian: apt-get install docker.io) and start it (systemctl start docker, or dockerd &)"
        return Check("docker engine", "fail", ctx.engine_error or "no engine", fix)
    if ctx.engine.version_tuple[:2] < ENGINE_MIN:
        return Check("docker engine", "fail", f"Docker {ctx.engine.version}", "upgrade the engine to >= 20.10")
    return Check("docker engine", "ok", f"Docker {ctx.engine.version} ({ctx.engine.operating_system or ctx.engine.os_type})")


def check_compose(ctx: Context) -> Check:
    fix = "install Compose v2 as a Docker CLI plugin (Debian: apt-get install docker-compose-plugin, or see .ci/run)"
    try:
        version = run(["docker", "compose", "version", "--short"], echo=False, timeout=30).stdout.strip()
    except RunError as exc:
        return Check("docker compose", "fail", f"`docker compose` does not work: {exc.output or exc}", fix)
    parsed = hostguard.parse_version(version.lstrip("v"))
    if parsed < COMPOSE_MIN:
        want = ".".join(map(str, COMPOSE_MIN))
        return Check("docker compose", "fail", f"Compose {version}", f"upgrade Compose to >= {want}")
    # A wrapper that always exits 0 would turn every failed step into a silent success.
    bogus = run(["docker", "compose", "--no-such-flag-yolo-cage"], check=False, echo=False, timeout=30)
    if bogus.returncode == 0:
        return Check("docker compose", "fail", "`docker compose` exits 0 on a bad flag: not the real binary", fix)
    return Check("docker compose", "ok", f"Compose {version}")


def check_host_isolation(ctx: Context) -> Check:
    if ctx.engine is None or ctx.settings is None:
        return Check("host isolation", "fail", "needs a working engine and valid settings (see above)")
    try:
        iso = hostguard.choose(ctx.settings, ctx.engine)
    except CageError as exc:
        return Check("host isolation", "fail", str(exc), "upgrade Docker to >= 28, or run a local Linux engine")
    if iso.mode == "none":
        return Check("host isolation", "warn", iso.reason)
    detail = iso.reason
    if iso.uses_netguard:
        found = [b for b in ("iptables-nft", "iptables-legacy", "iptables") if shutil.which(b)]
        detail += f"; host iptables tools: {', '.join(found) or 'none (netguard brings its own)'}"
        if not (Path("/proc/net/ip_tables_names").exists() or Path("/proc/net/netfilter").exists()):
            return Check("host isolation", "fail", detail + "; the kernel shows no netfilter", "load nf_tables / ip_tables")
    return Check("host isolation", "ok", detail)


def check_offline_base(ctx: Context) -> Check:
    mode = ctx.settings.images.base_mode if ctx.settings else "auto"
    missing = []
    if shutil.which("debootstrap") is None:
        missing.append("debootstrap (apt-get install debootstrap)")
    if os.geteuid() != 0:
        missing.append("root (debootstrap needs it)")
    if not missing:
        return Check("offline base image", "ok", "debootstrap and root available")
    status = "fail" if mode == "offline" else "warn"
    detail = f"missing {', '.join(missing)}; needed when no registry answers (base_mode {mode})"
    return Check("offline base image", status, detail, "install debootstrap and build as root, or use a registry")


def check_disk(ctx: Context) -> Check:
    root = ctx.docker_root if ctx.docker_root and Path(ctx.docker_root).exists() else None
    if root is None:
        return Check("disk", "warn", "cannot see the engine's data directory from here (remote engine?)")
    free = shutil.disk_usage(root).free / 2**30
    if free < DISK_MIN_GIB:
        return Check("disk", "fail", f"{free:.1f} GiB free in {root}", f"free at least {DISK_MIN_GIB:g} GiB")
    status = "warn" if free < DISK_WARN_GIB else "ok"
    return Check("disk", status, f"{free:.1f} GiB free in {root}")


ALL_CHECKS: list[Callable[[Context], Check]] = [
    check_python,
    check_settings,
    check_policy,
    check_docker_engine,
    check_compose,
    check_host_isolation,
    check_offline_base,
    check_disk,
]


def report(checks: list[Check]) -> None:
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    for c in checks:
        mark = console.paint(f"{c.status.upper():4}", colour[c.status], sys.stdout)
        first, *rest = c.detail.splitlines() or [""]
        print(f"{mark} {c.name:20} {first}")
        for line in rest:
            print(f"     {'':20} {line}")
        if c.status != "ok" and c.fix:
            print(f"     {'':20} fix: {c.fix}")


def require(checks: list[Check]) -> None:
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        names = ", ".join(c.name for c in failed)
        raise PrerequisiteError(f"{len(failed)} prerequisite(s) missing: {names} (details above)")


def doctor(settings_path: Path | None = None) -> list[Check]:
    checks = run_checks(context(settings_path))
    report(checks)
    require(checks)
    return checks

