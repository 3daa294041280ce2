"""TEST ONLY: a stand-in for GitHub (``python -m gitserver``): git smart HTTP and a REST API stub.

Over HTTPS on one port, by Host header:
- ``github.com`` (``GITSERVER_GIT_HOSTS``): git smart HTTP through ``git http-backend``
  for the bare repositories under ``/srv/git``; every request needs Basic auth
  ``x-access-token:<token>`` (401 with a Basic challenge otherwise, as GitHub
  answers pushes and private repositories; a fetch from ``GITSERVER_PUBLIC_REPOS`` needs
  none). The repositories accept every push
  (non-fast-forwards, deletions, tags): whatever the cage lets through lands.
- ``api.github.com`` (``GITSERVER_API_HOSTS``): answers ``GET /user`` and
  ``GET /repos/<owner>/<name>`` with small JSON, anything else with
  ``{"ok": true}``, after checking ``Authorization: Bearer|token <token>``;
  as ``api.anthropic.com`` (when listed there) it checks ``x-api-key`` against
  ``/run/gitserver/anthropic-key`` or ``Authorization: Bearer`` against
  ``/run/gitserver/anthropic-oauth`` instead.

Everything received is recorded, request by request, in
``/capture/requests.jsonl`` (method, host, target, headers, body as base64) before
it is answered. At start it creates its CA and a certificate for every name,
writes the CA to ``/capture/gitserver-ca.crt``, creates the repositories
(``GITSERVER_REPOS``, e.g. ``acme/widgets acme/other``, each with one commit on
``main``) and prints ``yolo-cage gitserver ready``.

The token is read from ``GITSERVER_TOKEN_FILE`` (default ``/run/gitserver/token``).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CAPTURE = Path(os.environ.get("GITSERVER_CAPTURE_DIR", "/capture"))
ROOT = Path(os.environ.get("GITSERVER_ROOT", "/srv/git"))
GIT_HOSTS = os.environ.get("GITSERVER_GIT_HOSTS", "github.com").split()
API_HOSTS = os.environ.get("GITSERVER_API_HOSTS", "api.github.com").split()
PORT = int(os.environ.get("GITSERVER_PORT", "443"))
PUBLIC = os.environ.get("GITSERVER_PUBLIC_REPOS", "").split()
MAX_BODY = 64 * 1024 * 1024
_LOCK = threading.Lock()


def run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> bytes:
    return subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True).stdout


# --- set-up -------------------------------------------------------------------------------------


def make_certificates(names: list[str]) -> tuple[Path, Path]:
    """A fresh CA and one leaf for every name (openssl CLI)."""
    tls = CAPTURE / ".tls"
    tls.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt, key, csr, crt = (tls / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=yolo-cage gitserver test CA", "-keyout", str(ca_key), "-out", str(ca_crt),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={names[0]}", "-keyout", str(key), "-out", str(csr))  # fmt: skip
    ext = tls / "ext.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-out", str(crt), "-extfile", str(ext))  # fmt: skip
    (CAPTURE / "gitserver-ca.crt").write_bytes(ca_crt.read_bytes())
    return crt, key


def make_repositories(names: list[str]) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "gitserver", "GIT_AUTHOR_EMAIL": "gitserver@example.test",
           "GIT_COMMITTER_NAME": "gitserver", "GIT_COMMITTER_EMAIL": "gitserver@example.test", "HOME": str(ROOT)}  # fmt: skip
    for name in names:
        bare = ROOT / f"{name}.git"
        run("git", "init", "-q", "--bare", "-b", "main", str(bare), env=env)
        for key, value in (
            ("http.receivepack", "true"),
            # Accept everything: a forbidden push that lands proves the proxy let it through.
            ("receive.denyNonFastForwards", "false"),
            ("receive.denyDeletes", "false"),
            ("receive.denyDeleteCurrent", "ignore"),
        ):
            run("git", "--git-dir", str(bare), "config", key, value, env=env)
        work = ROOT / ".seed" / name
        work.mkdir(parents=True)
        run("git", "init", "-q", "-b", "main", str(work), env=env)
        (work / "README.md").write_text(f"# {name}\n\nSeeded by the yolo-cage test gitserver.\n")
        run("git", "-C", str(work), "add", "README.md", env=env)
        run("git", "-C", str(work), "commit", "-q", "-m", "initial commit", env=env)
        run("git", "-C", str(work), "push", "-q", str(bare), "main", env=env)


# --- recording ------------------------------------------------------------------------------------


def record(event: dict) -> None:
    line = json.dumps({"ts": round(time.time(), 3), **event}, separators=(",", ":")) + "\n"
    with _LOCK, open(CAPTURE / "requests.jsonl", "a", encoding="utf-8") as out:
        out.write(line)
        out.flush()


def token() -> str:
    return Path(os.environ.get("GITSERVER_TOKEN_FILE", "/run/gitserver/token")).read_text().strip()


def secret(name: str) -> str:
    """Another expected credential, ``/run/gitserver/<name>`` (empty when absent)."""
    try:
        return (Path("/run/gitserver") / name).read_text().strip()
    except OSError:
        return ""


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# --- the server --------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "yolo-cage-gitserver"

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write("gitserver: " + (fmt % args) + "\n")

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()
            if len(out) > MAX_BODY:
                raise ValueError("body too large")

    def _handle(self) -> None:
        body = self._body()
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        record({
            "kind": "request", "method": self.command, "host": host, "target": self.path,
            "headers": [[k, v] for k, v in self.headers.items()], "body_b64": base64.b64encode(body).decode(),
        })  # fmt: skip
        if host in GIT_HOSTS:
            self._git(body)
        elif host in API_HOSTS:
            self._api()
        else:
            self._send(HTTPStatus.MISDIRECTED_REQUEST, b'{"error": "unknown host"}\n', "application/json")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _basic_ok(self) -> bool:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except ValueError:
            return False
        return user == "x-access-token" and _same(password, token())

    def _public_fetch(self) -> bool:
        """A fetch from a public repository needs no credentials (as on GitHub)."""
        path, _, query = self.path.partition("?")
        fetch = path.endswith("/git-upload-pack") or "service=git-upload-pack" in query
        return fetch and any(path.startswith(f"/{name}.git/") or path.startswith(f"/{name}/") for name in PUBLIC)

    def _git(self, body: bytes) -> None:
        if not self._public_fetch() and not self._basic_ok():
            record({"kind": "git-auth-refused", "target": self.path})
            self._send(401, b"authentication required\n", "text/plain", {"WWW-Authenticate": 'Basic realm="GitHub"'})
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(ROOT), "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token", "REMOTE_ADDR": self.client_address[0], "HOME": str(ROOT),
        }  # fmt: skip
        for header, var in (("Content-Encoding", "HTTP_CONTENT_ENCODING"), ("Git-Protocol", "GIT_PROTOCOL")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120)
        head, _, out = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, out = result.stdout.partition(b"\n\n")
        status, content_type, extra = 200, "application/octet-stream", {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key.lower() == "content-type":
                content_type = value.strip()
            elif key:
                extra[key] = value.strip()
        if result.stderr:
            sys.stderr.write(result.stderr.decode("utf-8", "replace"))
        self._send(status, out, content_type, {k: v for k, v in extra.items() if k.lower() not in ("content-length",)})

    def _api_auth_ok(self) -> bool:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        if host == "api.anthropic.com":
            # Anthropic's API: an API key in x-api-key, or a subscription login's OAuth token as Bearer.
            key, oauth = secret("anthropic-key"), secret("anthropic-oauth")
            by_key = bool(key) and _same(self.headers.get("x-api-key") or "", key)
            return by_key or (scheme.lower() == "bearer" and bool(oauth) and _same(value.strip(), oauth))
        return scheme.lower() in ("bearer", "token") and _same(value.strip(), token())

    def _api(self) -> None:
        if not self._api_auth_ok():
            self._send(401, b'{"message": "Bad credentials"}\n', "application/json")
            return
        path = self.path.partition("?")[0].rstrip("/")
        parts = path.split("/")
        if self.command == "GET" and path == "/user":
            answer: dict = {"login": "yolo-cage-bot", "id": 1}
        elif self.command == "GET" and len(parts) == 4 and parts[1] == "repos":
            answer = {"full_name": f"{parts[2]}/{parts[3]}", "default_branch": "main", "private": True}
        else:
            answer = {"ok": True, "method": self.command, "path": path}
        self._send(200, json.dumps(answer).encode() + b"\n", "application/json")


def main() -> int:
    CAPTURE.mkdir(parents=True, exist_ok=True)
    names = GIT_HOSTS + API_HOSTS
    crt, key = make_certificates(names)
    make_repositories(os.environ.get("GITSERVER_REPOS", "acme/widgets").split() + PUBLIC)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    context.set_alpn_protocols(["http/1.1"])
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    record({"kind": "started", "names": names})
    print(f"yolo-cage gitserver ready: https on {PORT} for {', '.join(names)}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
