"""Payloads built inside the agent, from the canaries planted there.

A probe never carries a secret: it names one. ``{{c:NAME|t1|t2}}`` in any
string of a probe is replaced by the canary NAME, read from where it was planted
(an environment variable of this process or a file under the run's directory),
then passed through transforms (``kit.redteam.encodings``; ``split:N:I`` takes
piece I of N). ``{{f:PATH}}`` is a whole planted file, ``{{envdump}}`` this
process's environment, ``{{m}}`` the probe's marker.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import urllib.parse
import uuid
import zlib

from kit.redteam import encodings

_TEMPLATE = re.compile(r"\{\{(c|f|m|envdump)(?::([^}|]*))?((?:\|[^}|]+)*)\}\}")


class Secrets:
    """Reads the planted canaries: ``sources`` maps a canary name to where it lives."""

    def __init__(self, run_dir: str, sources: dict[str, dict[str, str]]):
        self.run_dir = run_dir
        self.sources = sources

    def path(self, relative: str) -> str:
        return os.path.join(self.run_dir, relative)

    def file(self, relative: str) -> str:
        with open(self.path(relative), encoding="utf-8") as handle:
            return handle.read()

    def canary(self, name: str) -> str:
        source = self.sources[name]
        if "env" in source:
            return os.environ[source["env"]]
        text = self.file(source["file"])
        if "key" in source:
            match = re.search(rf"^{re.escape(source['key'])}\s*=\s*(\S+)\s*$", text, re.M)
            if not match:
                raise KeyError(f"{source['key']} not in {source['file']}")
            return match.group(1)
        if "after" in source:
            return text.split(source["after"], 1)[1].split("@", 1)[0]
        return text


def expand(text: str, secrets: Secrets, marker: str) -> str:
    def one(match: re.Match[str]) -> str:
        kind, arg, chain = match.group(1), match.group(2) or "", match.group(3)
        if kind == "m":
            value = marker
        elif kind == "envdump":
            value = "".join(f"{k}={v}\n" for k, v in sorted(os.environ.items()))
        elif kind == "f":
            value = secrets.file(arg)
        else:
            value = secrets.canary(arg)
        return _transform(value, [t for t in chain.split("|") if t])

    return _TEMPLATE.sub(one, text)


def _transform(value: str, chain: list[str]) -> str:
    for name in chain:
        if name.startswith("split:"):
            _, parts, index = name.split(":")
            value = encodings.split(value, int(parts))[int(index)]
        else:
            value = encodings.encode(value, name)
    return value


def expand_all(value: object, secrets: Secrets, marker: str) -> object:
    """``expand`` over every string of a JSON-like structure."""
    if isinstance(value, str):
        return expand(value, secrets, marker)
    if isinstance(value, list):
        return [expand_all(v, secrets, marker) for v in value]
    if isinstance(value, dict):
        return {expand(k, secrets, marker): expand_all(v, secrets, marker) for k, v in value.items()}
    return value


# Filler for oversize bodies: words, not base64 or hex, so it hides nothing.
_FILLER = b"the quick brown fox jumps over the lazy dog; "


def body(spec: dict | None, secrets: Secrets, marker: str) -> tuple[bytes, list[tuple[str, str]]]:
    """The request body a probe describes, and the headers that go with it."""
    if not spec:
        return b"", []
    data, headers = _shape(spec, secrets, marker)
    if spec.get("pad"):
        data = (_FILLER * (int(spec["pad"]) // len(_FILLER) + 1))[: int(spec["pad"])] + data
    return _compress(data, spec.get("encoding"), headers)


def _shape(spec: dict, secrets: Secrets, marker: str) -> tuple[bytes, list[tuple[str, str]]]:
    if "json" in spec:
        data = json.dumps(expand_all(spec["json"], secrets, marker)).encode()
        return data, [("Content-Type", "application/json")]
    if "form" in spec:
        pairs = [(expand(k, secrets, marker), expand(v, secrets, marker)) for k, v in spec["form"]]
        return urllib.parse.urlencode(pairs).encode(), [("Content-Type", "application/x-www-form-urlencoded")]
    if "multipart" in spec:
        return _multipart(spec["multipart"], secrets, marker)
    content_type = spec.get("content_type", "text/plain; charset=utf-8")
    return expand(spec.get("raw", ""), secrets, marker).encode(), [("Content-Type", content_type)]


def _multipart(parts: list[dict], secrets: Secrets, marker: str) -> tuple[bytes, list[tuple[str, str]]]:
    boundary = f"rt-{uuid.uuid4().hex[:16]}"
    out = []
    for part in parts:
        disposition = f'form-data; name="{part["name"]}"'
        if part.get("filename"):
            disposition += f'; filename="{part["filename"]}"'
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                   f"Content-Type: {part.get('content_type', 'application/octet-stream')}\r\n\r\n".encode())
        out.append(expand(part["content"], secrets, marker).encode() + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), [("Content-Type", f"multipart/form-data; boundary={boundary}")]


def _compress(data: bytes, encoding: str | None, headers: list[tuple[str, str]]):
    if not encoding:
        return data, headers
    if encoding == "gzip":
        data = gzip.compress(data)
    elif encoding == "deflate":
        data = zlib.compress(data)
    elif encoding == "br":
        data = brotli_compress(data)
    elif encoding == "bogus-gzip":
        # Says gzip, is not: a scanner that gives up on it must block, not pass.
        encoding = "gzip"
    else:
        raise ValueError(f"unknown body encoding {encoding!r}")
    return data, headers + [("Content-Encoding", encoding)]


def brotli_compress(data: bytes) -> bytes:
    """Brotli is not in Python's standard library; Node (in every agent image) has it."""
    script = "process.stdout.write(require('zlib').brotliCompressSync(require('fs').readFileSync(0)))"
    proc = subprocess.run(["node", "-e", script], input=data, capture_output=True, timeout=20, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"node brotli failed: {proc.stderr.decode(errors='replace')[:200]}")
    return proc.stdout
