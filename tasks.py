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
        # A failed step carries the failed command's output on its cause.
        output = getattr(exc, "output", "") or getattr(getattr(exc, "cause", None), "output", "")
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


@task(
    help={
        "only": "comma-separated images: agent, proxy, scanner, netguard, sink (test only), or all (default: every product image)",
        "base": "where the base image comes from: auto (default), registry (pull the pinned official image) or offline (debootstrap, needs root)",
        "extra_ca": "extra CA bundle for builds behind a TLS-intercepting proxy: auto (default: $YOLO_CAGE_EXTRA_CA_BUNDLE, $PIP_CERT, ...), none, or a PEM file",
        "runtime_extra_ca": "keep the extra CA in the proxy image too (to verify upstream TLS re-signed by a corporate interceptor)",
        "no_cache": "rebuild every layer (fresh packages)",
        "refresh_base": "build a new offline base image even if one exists",
    }
)
def build(c, only="", base="", extra_ca="", runtime_extra_ca=False, no_cache=False, refresh_base=False):
    """Build the cage's images (base image first when needed)."""
    from kit import images, settings

    _guard(
        lambda: images.build(
            images.options(
                settings.load().images,
                only=only or None,
                base=base or None,
                extra_ca=extra_ca or None,
                runtime_extra_ca=runtime_extra_ca,
                no_cache=no_cache,
                refresh_base=refresh_base,
            )
        )
    )


ns = Collection(test, build)
