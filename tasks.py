"""yolo-cage tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Thin on purpose: every task is a few typed lines calling kit/.
"""

from __future__ import annotations

import os
import sys

from invoke import Collection, Exit, task

from kit import console
from kit.errors import CageError


def _guard(fn):
    """Run a kit call; print a CageError as 'ERROR: ...' (traceback only with YOLO_CAGE_DEBUG=1)."""
    try:
        return fn()
    except CageError as exc:
        if os.environ.get("YOLO_CAGE_DEBUG") == "1":
            raise
        console.error(str(exc))
        output = getattr(exc, "output", "")
        if output:
            print(output, file=sys.stderr)
        raise Exit(code=1) from None


@task(
    help={
        "suite": "unit | integration | redteam | kind | all (default: all)",
        "pytest_args": "extra arguments passed to pytest, e.g. '-k scanner -x'",
    }
)
def test(c, suite="all", pytest_args=""):
    """Run the test suites (builds what they need first)."""
    from kit import testrun

    code = _guard(lambda: testrun.run_pytest(suite, pytest_args.split()))
    if code:
        raise Exit(code=code)


ns = Collection(test)
