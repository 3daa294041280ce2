"""Fill named volumes with files from the kit, on any engine.

No bind mounts (a remote engine cannot see this machine's files): a
short-lived helper container mounts the volume, empties it, and the files
arrive through the engine's archive API with their owner and mode set in the
tar headers. The helper has no network and one capability (to empty volumes owned by
the images' users).
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from docker.errors import DockerException

from kit.errors import CageError

MOUNT = "/volume"


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int = 0o444
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


def tar_of(files: Mapping[str, File], dirs: Mapping[str, Dir] | None = None) -> bytes:
    """A tar with ``dirs`` (``"."`` is the volume's root) and ``files``, owners and modes set."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, spec in sorted((dirs or {}).items()):
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, spec.mode, spec.uid, spec.gid, now
            tar.addfile(info)
        for path, spec in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(spec.data), spec.mode, spec.uid, spec.gid, now
            tar.addfile(info, io.BytesIO(spec.data))
    return buf.getvalue()


def replace_content(
    client,
    volume: str,
    image: str,
    files: Mapping[str, File],
    dirs: Mapping[str, Dir] | None = None,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Make ``volume`` hold exactly ``files`` (and ``dirs``); the volume must exist."""
    entry = ["/bin/sh", "-c", f"find {MOUNT} -mindepth 1 -delete"]
    with _helper(client, image, volume, entry, labels, f"could not fill volume {volume} using {image}") as helper:
        _run(helper, f"could not empty volume {volume}")
        if not helper.put_archive(MOUNT, tar_of(files, dirs)):
            raise CageError(f"could not write into volume {volume}")


def replace_file(client, volume: str, name: str, spec: File, image: str, labels: Mapping[str, str] | None = None) -> None:
    """Replace one file of a volume atomically: written beside it, then renamed over it, so a
    reader (a running proxy) sees the old file or the new one, never none or half of one."""
    scratch = f".{name}.new"
    entry = ["/bin/mv", "-f", f"{MOUNT}/{scratch}", f"{MOUNT}/{name}"]
    with _helper(client, image, volume, entry, labels, f"could not replace {name} in volume {volume}") as helper:
        if not helper.put_archive(MOUNT, tar_of({scratch: spec})):
            raise CageError(f"could not write {scratch} into volume {volume}")
        _run(helper, f"could not replace {name} in volume {volume}")


@contextmanager
def _helper(client, image: str, volume: str, entrypoint: list[str], labels: Mapping[str, str] | None, what: str):
    """A never-networked root helper mounting ``volume`` read-write; removed afterwards."""
    helper = None
    try:
        helper = client.containers.create(
            image,
            entrypoint=entrypoint,
            command=[],
            user="0:0",
            network_mode="none",
            cap_drop=["ALL"],
            # Root may only manage the volume's files: they belong to the images' users.
            cap_add=["DAC_OVERRIDE"],
            security_opt=["no-new-privileges:true"],
            volumes={volume: {"bind": MOUNT, "mode": "rw"}},
            labels=dict(labels or {}),
        )
        yield helper
    except DockerException as exc:
        raise CageError(f"{what}: {exc}") from exc
    finally:
        if helper is not None:
            try:
                helper.remove(force=True)
            except DockerException:
                pass


def _run(helper, what: str) -> None:
    helper.start()
    result = helper.wait(timeout=60)
    if result.get("StatusCode") != 0:
        logs = helper.logs().decode("utf-8", "replace")
        raise CageError(f"{what}: {logs.strip() or result}")


def image_user(client, image: str) -> tuple[int, int]:
    """The numeric ``uid:gid`` an image runs as (files it reads are chowned to it)."""
    try:
        user = client.images.get(image).attrs["Config"].get("User") or "0:0"
    except DockerException as exc:
        raise CageError(f"cannot inspect image {image}: {exc}") from exc
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise CageError(f"image {image} runs as {user!r}: images must use a numeric USER uid:gid")
    return int(uid), int(gid or uid)
