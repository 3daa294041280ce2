"""The kit's own exceptions, all in one place.

Every error a user can cause (bad settings, a missing prerequisite, a failed
command) is a :class:`CageError`; ``tasks.py`` prints its message as
``ERROR: ...`` and shows a traceback only when ``YOLO_CAGE_DEBUG=1``.
Anything else escaping is a bug and is shown with its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class CageError(Exception):
    """An error meant for the user: the message says what went wrong and what to do."""


class ConfigError(CageError):
    """Settings or policy are invalid. Carries every problem found, not just the first."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


class PrerequisiteError(CageError):
    """Something the kit needs on this machine is missing; the message says how to fix it."""


class RunError(CageError):
    """A command failed. Carries the command (pasteable) and what it printed."""

    def __init__(self, argv: Sequence[str], returncode: int | None, output: str, reason: str = ""):
        import shlex

        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        self.command = shlex.join(self.argv)
        why = reason or (f"exit status {returncode}" if returncode is not None else "did not finish")
        super().__init__(f"command failed ({why}): {self.command}")


class StepError(CageError):
    """A named bring-up step failed; ``cause`` is the underlying error."""

    def __init__(self, step: str, cause: BaseException, cleaned_up: bool):
        self.step = step
        self.cause = cause
        self.cleaned_up = cleaned_up
        tail = "removed what it had built" if cleaned_up else "kept what it had built (--retain)"
        super().__init__(f"step '{step}' failed: {cause}\n(bring-up {tail})")


class BackendError(CageError):
    """The running cage is not in the state an operation needs (not up, agent unknown, ...)."""


class BuildError(CageError):
    """An image build step failed; ``output`` is what the failed command printed (if any)."""

    def __init__(self, step: str, cause: BaseException):
        self.step = step
        self.cause = cause
        self.output = getattr(cause, "output", "")
        super().__init__(f"image build failed at step '{step}': {cause}")
