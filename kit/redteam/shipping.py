"""Packs the agent-side probe code and a batch of probes into one ``python3`` call.

The agent gets nothing installed: ``python3 -c BOOT`` reads a JSON document on
stdin holding the source of the ``kit.redteam.inside`` modules (and
``kit.redteam.encodings``) and the batch, registers the modules and runs the
batch. The same modules are imported normally by the unit tests.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Mapping

PACKAGES = ("kit", "kit.redteam", "kit.redteam.inside")
# Dependency order: each module only imports those before it.
MODULES = (
    "kit.redteam.encodings",
    "kit.redteam.inside.outcomes",
    "kit.redteam.inside.payloads",
    "kit.redteam.inside.netprobes",
    "kit.redteam.inside.httpprobes",
    "kit.redteam.inside.toolprobes",
    "kit.redteam.inside.main",
)

BOOT = """\
import json, sys, types
doc = json.loads(sys.stdin.buffer.read())
for name in doc["packages"]:
    mod = types.ModuleType(name); mod.__path__ = []; sys.modules[name] = mod
for name, source in doc["modules"]:
    mod = types.ModuleType(name); mod.__file__ = "<yolo-cage redteam>/" + name
    sys.modules[name] = mod
    exec(compile(source, mod.__file__, "exec"), mod.__dict__)
sys.modules["kit.redteam.inside.main"].main(doc["spec"])
"""


def sources() -> list[tuple[str, str]]:
    return [(name, inspect.getsource(importlib.import_module(name))) for name in MODULES]


def command(spec: Mapping[str, object]) -> tuple[list[str], bytes]:
    """The argv to exec in the agent and the bytes to send on its stdin."""
    document = {"packages": list(PACKAGES), "modules": sources(), "spec": dict(spec)}
    return ["python3", "-c", BOOT], json.dumps(document).encode()


def parse_output(stdout: bytes) -> list[dict]:
    """The JSON lines the batch printed (anything else on stdout is ignored, and reported by the caller)."""
    results = []
    for line in stdout.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return results
