"""`invoke build`: the cage's images, built with the Docker CLI as named steps.

Order of work: choose the base image (building the offline one if needed),
prepare ``.build/`` (the extra CA bundle and the requirements exported from
the lock), then one ``docker build`` per image with the repository root as
context. ``.build/`` is shared by concurrent builds, so a file lock serialises
them (two heavy builds on a small machine are slower than one after another
anyway).
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kit import base_image, base_offline, cabundle, console, pyreqs
from kit.errors import BuildError, CageError, PrerequisiteError, RunError, StepError
from kit.names import image_ref
from kit.runner import run, stream
from kit.steps import Step, run_steps

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / ".build"
BUILD_TIMEOUT = 3600.0


@dataclass(frozen=True)
class ImageSpec:
    name: str
    groups: tuple[str, ...] = ()  # Python dependency groups it installs (pyreqs)
    test_only: bool = False
    takes_runtime_ca: bool = False  # honours --runtime-extra-ca
    uses_extra_ca: bool = True  # its builder fetches over TLS (pip, npm) with the extra CA

    @property
    def dockerfile(self) -> Path:
        return REPO_ROOT / "images" / self.name / "Dockerfile"


# Build order: what the rest of the cage depends on first, the slow agent last.
IMAGES: dict[str, ImageSpec] = {
    spec.name: spec
    for spec in (
        ImageSpec("proxy", ("proxy",), takes_runtime_ca=True),
        ImageSpec("scanner", ("scanner",)),
        ImageSpec("netguard", uses_extra_ca=False),
        ImageSpec("agent"),
        ImageSpec("sink", ("sink",), test_only=True),
        ImageSpec("model", test_only=True, uses_extra_ca=False),
        ImageSpec("gitserver", test_only=True, uses_extra_ca=False),
    )
}
PRODUCT_IMAGES = tuple(name for name, spec in IMAGES.items() if not spec.test_only)


@dataclass(frozen=True)
class BuildOptions:
    only: tuple[str, ...] = ()  # empty: every product image (test images only when named)
    base: str = "auto"  # auto | registry | offline
    base_image: str | None = None  # None: base_image.OFFICIAL_BASE
    extra_ca: str = cabundle.AUTO  # auto | none | <path>
    runtime_extra_ca: bool = False  # keep the extra CA in the proxy image too
    no_cache: bool = False
    refresh_base: bool = False  # build a new offline base even if one exists
    tag: str | None = None  # None: kit.names default ("local")


@dataclass
class BuildReport:
    base: base_image.BaseChoice | None = None
    extra_ca: cabundle.ExtraCA | None = None
    built: list[tuple[str, str, float]] = field(default_factory=list)  # name, ref, seconds


def options(
    images_settings: object | None = None,
    *,
    only: str | None = None,
    base: str | None = None,
    extra_ca: str | None = None,
    **flags: bool,
) -> BuildOptions:
    """BuildOptions from the settings file's ``images`` section, command-line values winning.

    ``images_settings`` is ``kit.settings.Images`` (or None for the defaults);
    ``None`` for a flag means "not given on the command line".
    """
    get = lambda key, default: getattr(images_settings, key, default) if images_settings is not None else default
    return BuildOptions(
        only=parse_only(only),
        base=base or get("base_mode", "auto"),
        base_image=get("base_image", None),
        extra_ca=extra_ca or get("extra_ca_bundle", cabundle.AUTO),
        runtime_extra_ca=bool(flags.get("runtime_extra_ca") or get("runtime_extra_ca", False)),
        no_cache=bool(flags.get("no_cache")),
        refresh_base=bool(flags.get("refresh_base")),
        tag=get("tag", None),
    )


def parse_only(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"agent,proxy"`` -> ("agent", "proxy"); ``all`` adds test images; unknown names are errors."""
    if value is None:
        return ()
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    if names == ["all"]:
        return tuple(IMAGES)
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        raise CageError(f"unknown image(s) {', '.join(unknown)}; choose from: {', '.join(IMAGES)}, all")
    return tuple(dict.fromkeys(names))


def selected(options: BuildOptions) -> list[ImageSpec]:
    names = options.only or PRODUCT_IMAGES
    return [IMAGES[n] for n in IMAGES if n in names]  # keep the build order


def build(options: BuildOptions, *, engine: base_image.Engine | None = None) -> BuildReport:
    """Build the selected images; raises a CageError naming the failed step."""
    engine = engine or base_image.DockerEngine()
    specs = selected(options)
    report = BuildReport(extra_ca=check_options(options))
    check_docker()
    with build_lock():
        steps = [
            Step("choose the base image", lambda: _choose_base(options, engine, report)),
            Step("build the offline base image", lambda: _build_base_if_needed(report)),
            Step("prepare .build/ (extra CA, requirements from uv.lock)", lambda: _prepare(specs, report)),
        ]
        steps += [Step(f"build {image_ref(s.name, options.tag)}", _builder(s, options, report)) for s in specs]
        try:
            # Builds have nothing to undo: each image is tagged only once it is complete.
            run_steps(steps, retain=True)
        except StepError as exc:
            raise BuildError(exc.step, exc.cause) from exc.cause
    _summary(report)
    return report


def check_options(options: BuildOptions) -> cabundle.ExtraCA | None:
    """Every problem with the options before anything runs; returns the resolved extra CA."""
    if options.base not in base_image.MODES:
        raise CageError(f"unknown base mode {options.base!r}; choose one of: {', '.join(base_image.MODES)}")
    extra = cabundle.resolve(options.extra_ca)
    if options.runtime_extra_ca and extra is None:
        raise CageError("--runtime-extra-ca asks to keep the extra CA in the proxy image, but no extra CA was found")
    return extra


def check_docker() -> None:
    try:
        run(["docker", "version", "--format", "{{.Server.Version}}"], echo=False, timeout=30)
    except RunError as exc:
        raise PrerequisiteError(
            f"no Docker engine answers ({exc.output.strip().splitlines()[-1] if exc.output.strip() else exc}): "
            "start dockerd or point DOCKER_HOST at one"
        ) from exc


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    BUILD_DIR.mkdir(exist_ok=True)
    with open(BUILD_DIR / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.info("waiting for another image build in this repository to finish ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _choose_base(options: BuildOptions, engine: base_image.Engine, report: BuildReport) -> None:
    official = options.base_image or base_image.OFFICIAL_BASE
    report.base = base_image.choose(options.base, engine, official=official, refresh=options.refresh_base)
    console.info(f"  base: {report.base.ref} ({report.base.reason})")


def _build_base_if_needed(report: BuildReport) -> None:
    assert report.base is not None
    if report.base.build_needed:
        base_offline.build(report.base.ref)
    else:
        console.info("  not needed")


def _prepare(specs: Sequence[ImageSpec], report: BuildReport) -> None:
    write_extra_ca(report.extra_ca, BUILD_DIR)
    console.info(f"  extra CA: {report.extra_ca.describe() if report.extra_ca else 'none'}")
    for group in sorted({g for s in specs for g in s.groups}):
        pyreqs.write(group, REPO_ROOT, BUILD_DIR / "requirements")


def write_extra_ca(extra: cabundle.ExtraCA | None, build_dir: Path) -> Path:
    """``.build/ca/extra-ca.pem``: the bundle, or an empty file (Dockerfiles always COPY it)."""
    dest = build_dir / "ca" / "extra-ca.pem"
    dest.parent.mkdir(parents=True, exist_ok=True)
    content = extra.pem if extra else b""
    if not dest.exists() or dest.read_bytes() != content:
        dest.write_bytes(content)
    return dest


def build_argv(spec: ImageSpec, options: BuildOptions, base_ref: str, extra: cabundle.ExtraCA | None) -> list[str]:
    keep_ca = options.runtime_extra_ca and spec.takes_runtime_ca
    used = extra is not None and spec.uses_extra_ca
    argv = ["docker", "build", "--file", str(spec.dockerfile.relative_to(REPO_ROOT))]
    argv += ["--tag", image_ref(spec.name, options.tag), "--build-arg", f"BASE_IMAGE={base_ref}"]
    if spec.takes_runtime_ca:
        argv += ["--build-arg", f"RUNTIME_EXTRA_CA={1 if keep_ca else 0}"]
    # Labels must not vary between identical builds, or the layer cache breaks.
    labels = {
        "yolo-cage.image": spec.name,
        "yolo-cage.base": base_ref,
        "yolo-cage.extra-ca": ("builder+runtime" if keep_ca else "builder") if used else "none",
        "yolo-cage.extra-ca.sha256": extra.sha256 if used and extra else "",
        "org.opencontainers.image.title": f"yolo-cage {spec.name}",
    }
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    if options.no_cache:
        argv.append("--no-cache")
    return argv + ["."]


def _builder(spec: ImageSpec, options: BuildOptions, report: BuildReport):
    def build_one() -> None:
        assert report.base is not None
        started = time.monotonic()
        argv = build_argv(spec, options, report.base.ref, report.extra_ca)
        stream(argv, _progress, cwd=REPO_ROOT, timeout=BUILD_TIMEOUT)
        report.built.append((spec.name, image_ref(spec.name, options.tag), time.monotonic() - started))

    return build_one


def _progress(line: str) -> None:
    """Show the Dockerfile step being run (the classic builder prints 'Step N/M : ...')."""
    if line.startswith("Step ") and not console.quiet():
        console.info(console.paint(f"    {line[:140]}", "dim"))


def image_size(ref: str) -> int:
    out = run(["docker", "image", "inspect", "--format", "{{.Size}}", ref], echo=False).stdout.strip()
    return int(out)


def _summary(report: BuildReport) -> None:
    for _name, ref, seconds in report.built:
        console.info(f"  {ref:<28} {image_size(ref) / 1e6:8.0f} MB  built in {seconds:6.1f}s")
    console.info("next: uv run invoke up")
