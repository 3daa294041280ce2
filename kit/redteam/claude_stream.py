"""Reading Claude Code's ``--output-format stream-json --verbose`` output: what it ran and how it ended.

One JSON object per line: ``system`` (init: version, tools, API key source),
``assistant`` (the model's blocks, tool calls included), ``user`` (tool
results, with ``tool_use_result`` holding stdout/stderr), and a final
``result`` (``is_error``, ``api_error_status``, turns, duration). Lines that
are not JSON (warnings on stdout) are kept apart, never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    command: str


@dataclass
class ClaudeRun:
    exit_code: int
    calls: list[ToolCall] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)  # tool_use id -> what Claude Code returned to the model
    result: dict[str, Any] | None = None  # the final "result" event
    init: dict[str, Any] | None = None
    other_lines: list[str] = field(default_factory=list)
    stderr: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Claude Code finished the turn without an error of its own or of the API."""
        return self.exit_code == 0 and self.result is not None and not self.result.get("is_error")

    @property
    def version(self) -> str:
        return str((self.init or {}).get("claude_code_version", "?"))

    def failure(self) -> str:
        if self.result is None:
            tail = (self.stderr or "\n".join(self.other_lines))[-300:]
            return f"Claude Code ended (exit {self.exit_code}) without a result: {tail or 'no output'}"
        return (f"Claude Code reported an error (exit {self.exit_code}, subtype {self.result.get('subtype')}, "
                f"API status {self.result.get('api_error_status')}): {str(self.result.get('result'))[:300]}")


def parse(stdout: bytes, stderr: bytes = b"", exit_code: int = 0, seconds: float = 0.0) -> ClaudeRun:
    run = ClaudeRun(exit_code, stderr=stderr.decode("utf-8", "replace"), seconds=seconds)
    for line in stdout.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            run.other_lines.append(line)
            continue
        if isinstance(event, dict):
            _take(run, event)
        else:
            run.other_lines.append(line)
    return run


def _take(run: ClaudeRun, event: dict[str, Any]) -> None:
    kind = event.get("type")
    if kind == "system" and event.get("subtype") == "init":
        run.init = event
    elif kind == "result":
        run.result = event
    elif kind == "assistant":
        for block in _content(event):
            if block.get("type") == "tool_use":
                command = (block.get("input") or {}).get("command", "")
                run.calls.append(ToolCall(str(block.get("id", "")), str(block.get("name", "")), str(command)))
    elif kind == "user":
        for block in _content(event):
            if block.get("type") == "tool_result":
                run.results[str(block.get("tool_use_id", ""))] = _text(block.get("content"))


def _content(event: dict[str, Any]) -> list[dict[str, Any]]:
    content = (event.get("message") or {}).get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""
