"""Host-side state of a cage: ``<repo>/.yolo-cage/<project>/``, mode 0700.

Holds what must survive between `up` and `down` and must never be committed
or reach an agent: the cage CA (key 0600), the agents' proxy tokens and the
rendered proxy configuration. ``YOLO_CAGE_STATE_DIR`` replaces
``<repo>/.yolo-cage`` (read at call time), so the path is always
``<root>/<project>/``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from kit.errors import CageError

REPO_ROOT = Path(__file__).resolve().parent.parent


def root() -> Path:
    env = os.environ.get("YOLO_CAGE_STATE_DIR")
    return Path(env) if env else REPO_ROOT / ".yolo-cage"


def project_dir(project: str, *, create: bool = True) -> Path:
    """The state directory of one project, created 0700 (and checked to be private)."""
    path = root() / project
    if create:
        for part in (root(), path):
            part.mkdir(mode=0o700, exist_ok=True, parents=True)
            os.chmod(part, 0o700)
    return path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write atomically with ``mode`` set before any byte lands (no window where a key is world-readable)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_private(path: Path) -> bytes:
    """Read a secret file, refusing one that others can read (it may have leaked)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise CageError(f"{path} is readable by other users (mode {mode:o}); fix with: chmod 600 {path}")
    return path.read_bytes()


def agent_token(project: str, agent: str) -> str:
    """The agent's proxy credential: created once, then reused so `up` does not recreate agents."""
    path = project_dir(project) / "tokens" / agent
    if path.exists():
        return read_private(path).decode().strip()
    token = secrets.token_urlsafe(32)
    write_private(path, token.encode())
    return token


def forget(project: str) -> None:
    """Remove a project's tokens and rendered files (the CA is kept: it is per installation)."""
    base = project_dir(project, create=False)
    for sub in ("tokens", "rendered"):
        folder = base / sub
        if folder.is_dir():
            for item in folder.iterdir():
                item.unlink()
            folder.rmdir()
