"""The one way the kit runs a program.

Always an argv list, never a shell string. The command is echoed in a form
that can be pasted into a shell; on failure a :class:`RunError` carries the
command and its output so the top level can show both.
"""

from __future__ import annotations

import collections
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
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


def stream(
    argv: Sequence[str],
    on_line: Callable[[str], None],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    echo: bool = True,
    keep: int = 400,
) -> Result:
    """Run ``argv`` and hand each output line (stdout and stderr merged) to ``on_line``
    as it comes, for long commands whose progress the user should see (image builds).

    Raises :class:`RunError` on a non-zero exit or after ``timeout`` seconds,
    carrying the last ``keep`` lines of output.
    """
    argv = [os.fspath(a) for a in argv]
    if echo:
        console.command(shlex.join(argv))
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
        )
    except FileNotFoundError as exc:
        raise RunError(argv, None, "", f"{argv[0]} not found on PATH") from exc
    with proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            on_line(line)
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                raise RunError(argv, None, "\n".join(tail), f"timed out after {timeout}s")
        returncode = proc.wait()
    output = "\n".join(tail)
    if returncode != 0:
        raise RunError(argv, returncode, output)
    return Result(tuple(argv), returncode, output, "")
