"""The capture log: one JSON object per line in ``<dir>/events.jsonl``.

Every event has ``seq`` (1, 2, ... per sink run), ``ts`` (Unix seconds),
``kind`` and ``listener`` (``tcp/80``, ``udp/53``, ``icmp``); raw bytes are
stored base64 in fields ending ``_b64``. The format is documented in
images/sink/README.md; tests and the red team parse it.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any, TextIO

EVENTS_FILE = "events.jsonl"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def text_or_none(data: bytes) -> str | None:
    """The bytes as text when they are valid UTF-8 (convenient for tests), else None."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Capture:
    """Appends events; the sink is one asyncio thread, so lines never interleave."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._out: TextIO = open(directory / EVENTS_FILE, "a", encoding="utf-8")
        self._seq = 0

    def record(self, kind: str, listener: str, **fields: Any) -> dict[str, Any]:
        self._seq += 1
        event = {"seq": self._seq, "ts": round(time.time(), 6), "kind": kind, "listener": listener, **fields}
        self._out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
        self._out.flush()
        return event

    def close(self) -> None:
        self._out.close()
