"""The one way the kit runs a program.

Always an argv list, never a shell string. The command is echoed in a form
that can be pasted into a shell; on failure a :class:`RunError` carries the
command and its output so the top level can show both.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kit import console
from kit.errors import RunError


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = None,
    echo: bool = True,
) -> Result:
    """Run ``argv``; raise :class:`RunError` on a non-zero exit when ``check``.

    ``env`` is added to (not substituted for) the current environment.
    ``capture=False`` lets the program talk to the terminal directly
    (interactive shells, streaming logs).
    """
    argv = [os.fspath(a) for a in argv]
    if echo:
        console.command(shlex.join(argv))
    full_env = {**os.environ, **env} if env else None
    text = not isinstance(input, bytes)
    try:
        proc = subprocess.run(
            argv,
            env=full_env,
            cwd=cwd,
            input=input,
            timeout=timeout,
            text=text,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
    except FileNotFoundError as exc:
        raise RunError(argv, None, "", f"{argv[0]} not found on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        out = _text(exc.stdout) + _text(exc.stderr)
        raise RunError(argv, None, out, f"timed out after {timeout}s") from exc
    result = Result(tuple(argv), proc.returncode, _text(proc.stdout), _text(proc.stderr))
    if check and proc.returncode != 0:
        raise RunError(argv, proc.returncode, result.output)
    return result


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
