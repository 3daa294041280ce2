"""Build the offline base image: debootstrap, slim, ``docker import``.

For machines with no container registry. The result matches the official
slim image in what matters to our Dockerfiles: same suite, apt working with
updates and security suites, no documentation, manuals or translations, no
package lists or caches, and the same apt/dpkg settings for image builds
(``images/base/files/``).

debootstrap creates device nodes, sets file owners and chroots: it needs root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from kit import console
from kit.base_image import SUITE
from kit.errors import CageError, PrerequisiteError
from kit.runner import run

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_FILES = REPO_ROOT / "images" / "base" / "files"
# Optional: a Debian mirror URL for debootstrap (its own default otherwise).
MIRROR_VAR = "YOLO_CAGE_DEBIAN_MIRROR"
DEBOOTSTRAP_TIMEOUT = 1800.0

# Removed from the tree after debootstrap, like the official slim image
# (dpkg's path-exclude in images/base/files keeps them out of later installs).
_SLIM_GLOBS = (
    "usr/share/man/*",
    "usr/share/groff/*",
    "usr/share/info/*",
    "usr/share/lintian/*",
    "usr/share/linda/*",
    "usr/share/locale/*",
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*",
    "var/log/*.log",
    "var/log/apt/*",
    "tmp/*",
    "var/tmp/*",
    "dev/*",
)
# Host-specific files debootstrap copies in; Docker provides its own at run time.
_EMPTIED = ("etc/resolv.conf", "etc/hostname", "etc/machine-id")

IMPORT_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
)


def check_prerequisites() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append(
            "building the offline base image needs root (debootstrap creates device nodes, sets owners "
            "and chroots): run the build as root (e.g. `sudo -E uv run invoke build`), or use "
            "--base registry on a machine that can pull images"
        )
    if shutil.which("debootstrap") is None:
        problems.append("debootstrap is not installed: `apt-get install debootstrap` (Debian/Ubuntu)")
    if shutil.which("tar") is None:
        problems.append("tar is not installed")
    if problems:
        raise PrerequisiteError("cannot build the offline base image:\n  - " + "\n  - ".join(problems))


def build(ref: str) -> None:
    """Build the offline base and tag it ``ref``."""
    check_prerequisites()
    work = Path(tempfile.mkdtemp(prefix="yolo-cage-base-", dir="/var/tmp"))
    try:
        rootfs = work / "rootfs"
        _debootstrap(rootfs)
        shutil.copytree(BASE_FILES, rootfs, dirs_exist_ok=True, symlinks=True)
        write_sources(rootfs)
        _upgrade(rootfs)
        slim(rootfs)
        tarball = work / "rootfs.tar"
        run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."])
        _import(tarball, ref)
    finally:
        _remove(work)
    _smoke_test(ref)


def _debootstrap(rootfs: Path) -> None:
    argv = ["debootstrap", "--variant=minbase", SUITE, str(rootfs)]
    mirror = os.environ.get(MIRROR_VAR, "").strip()
    if mirror:
        argv.append(mirror)
    console.info(f"  debootstrap {SUITE} (a few minutes on a slow link)")
    run(argv, timeout=DEBOOTSTRAP_TIMEOUT)


def _upgrade(rootfs: Path) -> None:
    """Bring in the updates and security suites, as the official image's dated build does
    (debootstrap installs from the release alone)."""
    env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    run(["chroot", str(rootfs), "apt-get", "update", "-q"], env=env, timeout=DEBOOTSTRAP_TIMEOUT)
    upgrade = ["apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confold", "upgrade"]
    run(["chroot", str(rootfs), *upgrade], env=env, timeout=DEBOOTSTRAP_TIMEOUT)


def slim(rootfs: Path) -> None:
    """Remove what the official slim image does not ship (docs, manuals, translations,
    package lists and caches, host-specific files)."""
    for pattern in _SLIM_GLOBS:
        for path in rootfs.glob(pattern):
            _delete(path)
    for doc in (rootfs / "usr/share/doc").glob("*"):
        _slim_doc(doc)
    for name in _EMPTIED:
        target = rootfs / name
        if target.exists() or target.is_symlink():
            target.unlink()
            target.write_text("")


def _slim_doc(doc: Path) -> None:
    """Keep only a package's copyright file (licences require it)."""
    if not doc.is_dir() or doc.is_symlink():
        _delete(doc)
        return
    for child in doc.iterdir():
        if child.name != "copyright":
            _delete(child)


def write_sources(rootfs: Path) -> None:
    """Replace debootstrap's one-line sources.list with the suites an image needs.

    debootstrap configures only the release itself; images also need the
    updates and security suites. The mirror is the one debootstrap used; the
    security archive sits beside it (``<mirror>-security``) on Debian's mirrors.
    """
    legacy = rootfs / "etc/apt/sources.list"
    mirror = mirror_from_sources_list(legacy.read_text() if legacy.exists() else "")
    (rootfs / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(deb822_sources(mirror))
    if legacy.exists():
        legacy.unlink()


def mirror_from_sources_list(text: str) -> str:
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "deb" and fields[2] == SUITE:
            return fields[1].rstrip("/")
    raise CageError(f"debootstrap wrote no 'deb <mirror> {SUITE} ...' line to /etc/apt/sources.list")


def deb822_sources(mirror: str) -> str:
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\nSigned-By: {keyring}\n\n"
        f"Types: deb\nURIs: {mirror}-security\nSuites: {SUITE}-security\nComponents: main\nSigned-By: {keyring}\n"
    )


def _import(tarball: Path, ref: str) -> None:
    argv = ["docker", "import"]
    for change in IMPORT_CHANGES:
        argv += ["--change", change]
    argv += ["--message", f"yolo-cage offline base: debootstrap --variant=minbase {SUITE}", str(tarball), ref]
    run(argv, timeout=600)


def _smoke_test(ref: str) -> None:
    out = run(["docker", "run", "--rm", "--network", "none", ref, "sh", "-c", ". /etc/os-release && echo $VERSION_CODENAME"])
    if out.stdout.strip() != SUITE:
        raise CageError(f"the offline base {ref} reports release {out.stdout.strip()!r}, expected {SUITE!r}")


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _remove(work: Path) -> None:
    """Remove the scratch tree, first unmounting what a failed debootstrap may have left mounted
    (never delete through a mount: /proc or /sys of the host would be in the way)."""
    for point in _mounts_under(work):
        run(["umount", "-l", point], check=False)
    if _mounts_under(work):
        console.warn(f"left {work} in place: something is still mounted under it")
        return
    shutil.rmtree(work, ignore_errors=True)
