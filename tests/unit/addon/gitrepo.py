"""A throwaway git repository for the git unit tests: real commits, real packs (git CLI, no network)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from addon.gitsmart import pkt

ZERO = "0" * 40


class Repo:
    def __init__(self, path: Path, object_format: str = "sha1"):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", f"--object-format={object_format}", "-b", "main")
        self.n = 0

    def git(self, *args: str, stdin: bytes | None = None) -> bytes:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_AUTHOR_DATE": "1700000000 +0000",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_COMMITTER_DATE": "1700000000 +0000",
            "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self.path),
        }  # fmt: skip
        return subprocess.run(["git", "-C", str(self.path), *args], input=stdin, capture_output=True, check=True, env=env).stdout

    def commit(self, text: str | None = None, name: str = "file.txt") -> str:
        self.n += 1
        (self.path / name).write_text(text if text is not None else f"line {self.n}\n" * 50)
        self.git("add", name)
        self.git("commit", "-q", "-m", f"commit {self.n}")
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref).decode().strip()

    def pack(self, new: str, *exclude: str, thin: bool = False, ofs: bool = True) -> bytes:
        """The pack a push of ``new`` sends when the server has ``exclude`` (git push uses offset deltas
        when the server offers ofs-delta, as every current one does)."""
        revs = "\n".join([new, *(f"^{e}" for e in exclude)]) + "\n"
        args = ["pack-objects", "--stdout", "--revs", "-q"] + (["--thin"] if thin else []) + (["--delta-base-offset"] if ofs else [])
        return self.git(*args, stdin=revs.encode())


def push_body(
    commands: list[tuple[str, str, str]],
    pack: bytes = b"",
    caps: str = "report-status side-band-64k agent=git/2",
    options: list[str] | None = None,
) -> bytes:
    lines = []
    for i, (old, new, ref) in enumerate(commands):
        line = f"{old} {new} {ref}".encode()
        lines.append(pkt(line + b"\0" + caps.encode() if i == 0 else line))
    body = b"".join(lines) + b"0000"
    if options is not None:
        body += b"".join(pkt(o.encode()) for o in options) + b"0000"
    return body + pack


def advertisement(refs: dict[str, str], oid_length: int = 40) -> bytes:
    head = pkt(b"# service=git-receive-pack\n") + b"0000"
    caps = b"report-status delete-refs side-band-64k quiet atomic push-options object-format=sha1"
    if not refs:
        return head + pkt(b"0" * oid_length + b" capabilities^{}\0" + caps + b"\n") + b"0000"
    lines = [pkt(f"{oid} {ref}".encode() + (b"\0" + caps if i == 0 else b"") + b"\n") for i, (ref, oid) in enumerate(refs.items())]
    return head + b"".join(lines) + b"0000"
