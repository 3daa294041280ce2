"""The model's transcript: one JSON line per request it received, with what it answered.

Written to ``<dir>/transcript.jsonl`` and read by the host with the archive
API. Credentials the client sent (``x-api-key``, ``authorization``) are
recorded as a fingerprint (SHA-256, first 16 hex), a length and a short
prefix, never whole: the test compares fingerprints with the key it expects.
Tool results are kept whole: they are what "the model saw".
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CREDENTIAL_HEADERS = ("x-api-key", "authorization", "proxy-authorization", "cookie")
MAX_BODY = 64 * 1024  # bytes of an unrecognised request's body kept (base64)
FILE = "transcript.jsonl"


def fingerprint(value: str) -> dict[str, Any]:
    # A provider prefix ("sk-ant-") tells a key from a placeholder; short values show nothing.
    prefix = value[:7] if len(value) >= 20 else ""
    return {"sha256_16": hashlib.sha256(value.encode()).hexdigest()[:16], "length": len(value), "prefix": prefix}


def credential_value(name: str, value: str) -> str:
    """The secret part of a credential header (``Bearer x`` -> ``x``)."""
    if name == "authorization" and " " in value:
        return value.split(" ", 1)[1].strip()
    return value


def headers_record(headers: Iterable[tuple[str, str]]) -> tuple[list[list[str]], dict[str, Any]]:
    """Headers with credentials replaced by ``<fingerprint>``, and those fingerprints by header name."""
    shown, credentials = [], {}
    for name, value in headers:
        lower = name.lower()
        if lower in CREDENTIAL_HEADERS:
            credentials[lower] = fingerprint(credential_value(lower, value))
            shown.append([name, f"<{credentials[lower]['sha256_16']}>"])
        else:
            shown.append([name, value])
    return shown, credentials


def body_record(body: bytes) -> dict[str, Any]:
    return {"body_size": len(body), "body_b64": base64.b64encode(body[:MAX_BODY]).decode()}


class Transcript:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE
        self._lock = threading.Lock()
        self._seq = 0

    def record(self, kind: str, **fields: Any) -> Mapping[str, Any]:
        with self._lock:
            self._seq += 1
            event = {"seq": self._seq, "ts": round(time.time(), 3), "kind": kind, **fields}
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
            return event


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
