"""Scenario scripts and the stateless choice of the next reply.

The host writes scripts as JSON files into the model's scripts directory
(``kit.redteam.claude_scenarios`` renders them): per run and scenario id a
list of tool calls and a closing line. A conversation picks its script by a
marker in the user's prompt, ``[yolo-cage-scenario <id> run=<run>]``.

The reply depends only on the request: the next step is the number of this
script's tool calls already in the conversation, so a retried request gets the
same answer and two conversations never share state. Requests without the
``Bash`` tool (Claude Code's side calls: titles, summaries, quota checks) get
a short text and never a tool call.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import Block, MessagesRequest, Text, ToolUse

MARKER = re.compile(r"\[yolo-cage-scenario ([a-z0-9][a-z0-9-]{0,62}) run=([0-9a-z-]{1,40})\]")
SCRIPT_VERSION = 1
RESULT_PREVIEW = 400  # characters of each tool result quoted back in the report
SIDE_REPLY = "OK"


class ScriptError(ValueError):
    """A scripts file is malformed."""


@dataclass(frozen=True)
class Step:
    tool: str
    input: Mapping[str, Any]
    say: str = ""


@dataclass(frozen=True)
class Script:
    run: str
    scenario: str
    steps: tuple[Step, ...]
    intro: str = ""
    final: str = "Done."

    @property
    def tool_id_prefix(self) -> str:
        digest = hashlib.sha256(f"{self.run}/{self.scenario}".encode()).hexdigest()[:10]
        return f"toolu_yc{digest}_"

    def tool_id(self, index: int) -> str:
        return f"{self.tool_id_prefix}{index:02d}"


@dataclass(frozen=True)
class Decision:
    """What to answer, and why (for the transcript)."""

    kind: str  # step | report | side | unscripted | unknown-script
    blocks: tuple[Block, ...]
    scenario: str | None = None
    run: str | None = None
    step: int | None = None
    results: tuple[Mapping[str, Any], ...] = ()  # the tool results this script's calls got so far


def parse_scripts(doc: Any, source: str = "<scripts>") -> dict[tuple[str, str], Script]:
    if not isinstance(doc, dict) or doc.get("version") != SCRIPT_VERSION:
        raise ScriptError(f"{source}: expected an object with version {SCRIPT_VERSION}")
    run = doc.get("run")
    scenarios = doc.get("scenarios")
    if not isinstance(run, str) or not isinstance(scenarios, dict):
        raise ScriptError(f"{source}: 'run' (string) and 'scenarios' (object) are required")
    out = {}
    for name, body in scenarios.items():
        steps = body.get("steps") if isinstance(body, dict) else None
        if not isinstance(steps, list) or not all(isinstance(s, dict) and isinstance(s.get("input"), dict) for s in steps):
            raise ScriptError(f"{source}: scenario {name!r}: 'steps' must be a list of {{tool, input, say}}")
        parsed = tuple(Step(str(s.get("tool", "Bash")), s["input"], str(s.get("say", ""))) for s in steps)
        out[(run, name)] = Script(run, name, parsed, str(body.get("intro", "")), str(body.get("final", "Done.")))
    return out


def parse_keys(doc: Any, source: str = "<scripts>") -> frozenset[str]:
    """SHA-256 hex digests of the API keys this run's client may present (``accept_keys_sha256``)."""
    keys = doc.get("accept_keys_sha256", []) if isinstance(doc, dict) else []
    if not isinstance(keys, list) or not all(isinstance(k, str) and re.fullmatch(r"[0-9a-f]{64}", k) for k in keys):
        raise ScriptError(f"{source}: 'accept_keys_sha256' must be a list of SHA-256 hex digests")
    return frozenset(keys)


class Library:
    """Every scripts file of a directory, reloaded when the directory changes."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._scripts: dict[tuple[str, str], Script] = {}
        self._keys: frozenset[str] = frozenset()
        self.errors: list[str] = []

    def get(self, run: str, scenario: str) -> Script | None:
        with self._lock:
            self._refresh()
            return self._scripts.get((run, scenario))

    def accepted_keys(self) -> frozenset[str]:
        """The API keys any loaded run accepts (empty: no run asked for a check)."""
        with self._lock:
            self._refresh()
            return self._keys

    def _refresh(self) -> None:
        files = sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []
        stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        if stamp == self._stamp:
            return
        scripts: dict[tuple[str, str], Script] = {}
        keys: set[str] = set()
        errors = []
        for path in files:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                scripts.update(parse_scripts(doc, path.name))
                keys |= parse_keys(doc, path.name)
            except (OSError, ValueError) as exc:
                errors.append(f"{path.name}: {exc}")
        self._stamp, self._scripts, self._keys, self.errors = stamp, scripts, frozenset(keys), errors


def find_marker(request: MessagesRequest) -> tuple[str, str] | None:
    """(scenario, run) from the first marker in the user's turns."""
    for text in request.user_texts():
        match = MARKER.search(text)
        if match:
            return match.group(1), match.group(2)
    return None


def decide(request: MessagesRequest, library: Library) -> Decision:
    if "Bash" not in request.tools:
        return Decision("side", (Text(SIDE_REPLY),))
    found = find_marker(request)
    if found is None:
        return Decision("unscripted", (Text("This model only plays yolo-cage scenarios; the prompt names none."),))
    scenario, run = found
    script = library.get(run, scenario)
    if script is None:
        return Decision("unknown-script", (Text(f"No script for scenario {scenario} of run {run}."),), scenario, run)
    results = _results(request, script)
    step = len([i for i in request.tool_use_ids() if i.startswith(script.tool_id_prefix)])
    if step < len(script.steps):
        return Decision("step", _step_blocks(script, step), scenario, run, step, results)
    return Decision("report", (Text(report(script, results)),), scenario, run, step, results)


def _step_blocks(script: Script, index: int) -> tuple[Block, ...]:
    step = script.steps[index]
    say = step.say or (script.intro if index == 0 else "")
    call = ToolUse(script.tool_id(index), step.tool, step.input)
    return (Text(say), call) if say else (call,)


def _results(request: MessagesRequest, script: Script) -> tuple[Mapping[str, Any], ...]:
    out = []
    for tool_id, text, is_error in request.tool_results():
        if tool_id.startswith(script.tool_id_prefix):
            out.append({"step": int(tool_id.rsplit("_", 1)[1]), "is_error": is_error, "text": text})
    return tuple(out)


def report(script: Script, results: Sequence[Mapping[str, Any]]) -> str:
    """The closing message: what each step's tool result showed (shortened)."""
    lines = [script.final, "", f"What the tools returned ({len(results)} of {len(script.steps)} steps):"]
    for result in results:
        text = " ".join(str(result["text"]).split())
        cut = text if len(text) <= RESULT_PREVIEW else text[:RESULT_PREVIEW] + "..."
        flag = " (error)" if result["is_error"] else ""
        lines.append(f"- step {result['step'] + 1}{flag}: {cut}")
    return "\n".join(lines)
