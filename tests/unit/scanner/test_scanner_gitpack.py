"""Git pushes over smart HTTP: real `git push` bodies, captured from `git http-backend` on loopback.

Each "found" push has a control: the same push with the secret left out is clean.
"""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scanner import gitpack
from scanner.core import Scanner
from scanner.request import ScanRequest

GIT_PUSH = "application/x-git-receive-pack-request"


def canary() -> str:
    return "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))


@dataclass
class Captured:
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


class _GitBackend(BaseHTTPRequestHandler):
    """`git http-backend` as CGI; every receive-pack request body is kept."""

    root: Path
    captured: list[Captured]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._cgi(b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.endswith("git-receive-pack"):
            self.captured.append(Captured(self.path, tuple(self.headers.items()), body))
        self._cgi(body)

    def _cgi(self, body: bytes) -> None:
        path, _, query = self.path.partition("?")
        env = {"GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1", "REMOTE_USER": "test",
               "REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": self.command, "PATH_INFO": path,
               "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body)), "PATH": os.environ["PATH"]}
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        lines = head.decode().split("\r\n")
        for line in lines:
            if line.lower().startswith("status:"):
                status = int(line.split()[1])
        self.send_response(status)
        for line in lines:
            name, _, value = line.partition(":")
            if name.lower() != "status":
                self.send_header(name, value.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@dataclass
class GitServer:
    url: str
    root: Path
    captured: list[Captured]

    def new_repo(self, name: str) -> str:
        git("init", "-q", "--bare", "-b", "main", str(self.root / f"{name}.git"))
        return f"{self.url}/{name}.git"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GitServer]:
    root = tmp_path / "srv"
    root.mkdir()
    handler = type("Handler", (_GitBackend,), {"root": root, "captured": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield GitServer(f"http://127.0.0.1:{httpd.server_address[1]}", root, handler.captured)
    httpd.shutdown()
    httpd.server_close()


def git(*args: str, cwd: Path | None = None) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd or "/nonexistent"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.test"}
    return subprocess.run(["git", "-c", "http.postBuffer=104857600", "-c", "protocol.version=0", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True).stdout


def clone(tmp_path: Path, server: GitServer, name: str) -> tuple[Path, str]:
    url = server.new_repo(name)
    work = tmp_path / name
    git("init", "-q", "-b", "main", str(work))
    git("remote", "add", "origin", url, cwd=work)
    return work, url


def commit(work: Path, files: dict[str, str], message: str = "change") -> None:
    for name, text in files.items():
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)


def push(server: GitServer, work: Path) -> Captured:
    before = len(server.captured)
    git("push", "-q", "origin", "main", cwd=work)
    assert len(server.captured) == before + 1
    return server.captured[-1]


def scan(scanner: Scanner, server: GitServer, got: Captured):
    return scanner.scan_request(ScanRequest(method="POST", url=server.url + got.path, headers=got.headers, body=got.body))


def source(lines: int, seed: str) -> str:
    return "".join(f"def handler_{seed}_{i}(request):\n    return render(request, 'page_{i}.html')\n" for i in range(lines))


def test_secret_committed_and_pushed_is_found(tmp_path: Path, server: GitServer, scanner: Scanner) -> None:
    token = canary()
    leak, _ = clone(tmp_path, server, "leak")
    commit(leak, {"app.py": source(40, "a"), "settings.env": f"DEBUG=1\nGITHUB_TOKEN={token}\n"})
    got = push(server, leak)
    assert dict(got.headers)["Content-Type"] == GIT_PUSH and b"PACK" in got.body
    assert token.encode() not in got.body  # compressed on the wire: invisible to a byte scanner
    result = scan(scanner, server, got)
    assert result.verdict == "findings"
    hit = [f for f in result.findings if f.fingerprint == scanner.fp(token.encode())]
    assert hit and hit[0].rule == "github-token" and hit[0].location.startswith("body:git-pack[")

    clean, _ = clone(tmp_path, server, "clean")
    commit(clean, {"app.py": source(40, "a"), "settings.env": "DEBUG=1\nGITHUB_TOKEN=${GITHUB_TOKEN}\n"})
    assert scan(scanner, server, push(server, clean)).verdict == "clean"


def test_secret_added_to_a_pushed_file_is_found_in_the_thin_delta(tmp_path: Path, server: GitServer, scanner: Scanner) -> None:
    """Second push: the server has the file, so git sends a delta against it (REF_DELTA, base not in the pack)."""
    token = canary()
    for name, added in (("thin-leak", f"TOKEN = '{token}'\n"), ("thin-clean", "TOKEN = os.environ['TOKEN']\n")):
        work, _ = clone(tmp_path, server, name)
        commit(work, {"app.py": source(200, "b")})
        push(server, work)
        text = source(200, "b")
        commit(work, {"app.py": text[: len(text) // 2] + added + text[len(text) // 2 :]})
        got = push(server, work)
        kinds = gitpack.parse(got.body, 1 << 26).kinds
        assert gitpack.REF_DELTA in kinds, kinds
        result = scan(scanner, server, got)
        if name == "thin-leak":
            assert [f.rule for f in result.findings if f.fingerprint == scanner.fp(token.encode())] == ["github-token"]
        else:
            assert result.verdict == "clean", result.findings


def test_secret_assembled_over_two_commits_of_one_push_is_found(tmp_path: Path, server: GitServer, scanner: Scanner) -> None:
    """Commit 1 holds half the token, commit 2 completes it (and is shorter, so git stores it as a
    delta against commit 1's file): only the resolved delta holds the token whole."""
    token = canary()
    text = source(200, "c")
    for name, second in (("two-leak", token[20:]), ("two-clean", "_placeholder")):
        work, _ = clone(tmp_path, server, name)
        commit(work, {"app.py": source(10, "x")})
        push(server, work)
        commit(work, {"app.py": text + f"TOKEN = '{token[:20]}"}, "first half")
        commit(work, {"app.py": text[600:] + f"TOKEN = '{token[:20]}{second}'\n"}, "second half")
        got = push(server, work)
        pushed = gitpack.parse(got.body, 1 << 26)
        whole = [k for o, k in zip(pushed.objects, pushed.kinds) if token.encode() in o]
        assert whole == ([gitpack.OFS_DELTA] if name == "two-leak" else []), pushed.kinds  # in no stored object
        assert not any(token.encode() in o for o in gitpack.parse(got.body, 1 << 26, resolve=False).objects)
        result = scan(scanner, server, got)
        found = [f.rule for f in result.findings if f.fingerprint == scanner.fp(token.encode())]
        assert found == (["github-token"] if name == "two-leak" else []), result.findings


def test_branch_deletion_has_no_pack(tmp_path: Path, server: GitServer, scanner: Scanner) -> None:
    work, _ = clone(tmp_path, server, "del")
    commit(work, {"a.txt": "x\n"})
    push(server, work)
    git("push", "-q", "origin", "main:gone", cwd=work)
    git("push", "-q", "origin", ":gone", cwd=work)
    got = server.captured[-1]
    assert b"PACK" not in got.body
    assert scan(scanner, server, got).verdict == "clean"


# --- bad packs get a definite verdict ---------------------------------------------------


def _pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


def _pack(objects: list[tuple[int, int, bytes]]) -> bytes:
    """A pack of (type, declared size, zlib stream) objects, with a zero checksum."""
    out = bytearray(b"PACK" + (2).to_bytes(4, "big") + len(objects).to_bytes(4, "big"))
    for kind, size, stream in objects:
        head = [(kind << 4) | (size & 15)]
        size >>= 4
        while size:
            head[-1] |= 0x80
            head.append(size & 0x7F)
            size >>= 7
        out += bytes(head) + stream
    return bytes(out) + bytes(20)


def _push_body(pack: bytes) -> bytes:
    command = b"0" * 40 + b" " + b"1" * 40 + b" refs/heads/main\0report-status"
    return _pkt(command) + b"0000" + pack


def _scan_body(scanner: Scanner, body: bytes):
    return scanner.scan_request(ScanRequest(method="POST", url="http://git.test/r.git/git-receive-pack",
                                            headers=(("content-type", GIT_PUSH),), body=body))


def test_built_pack_both_verdicts(scanner: Scanner) -> None:
    token = canary().encode()
    found = _scan_body(scanner, _push_body(_pack([(3, len(b"x=" + token), zlib.compress(b"x=" + token))])))
    assert [(f.rule, f.location) for f in found.findings] == [("github-token", "body:git-pack[0]")]
    assert _scan_body(scanner, _push_body(_pack([(3, 5, zlib.compress(b"x=abc"))]))).verdict == "clean"


@pytest.mark.parametrize("name,pack,code", [
    ("declared bomb", _pack([(3, 300 << 20, zlib.compress(b"x"))]), "decompression-bomb"),
    ("zlib bomb", _pack([(3, 30 << 20, zlib.compress(bytes(30 << 20), 9))]), "decompression-bomb"),
    ("size mismatch", _pack([(3, 3, zlib.compress(b"abcdef"))]), "malformed-git-pack"),
    ("truncated", _pack([(3, 6, zlib.compress(b"abcdef"))])[:-25], "malformed-git-pack"),
    ("bad type", _pack([(5, 1, zlib.compress(b"a"))]), "malformed-git-pack"),
    ("not a pack", b"JUNKJUNKJUNKJUNK", "malformed-git-pack"),
])
def test_bad_packs_are_invalid(scanner: Scanner, name: str, pack: bytes, code: str) -> None:
    result = _scan_body(scanner, _push_body(pack))
    assert result.verdict == "invalid" and [e.code for e in result.errors] == [code], name
