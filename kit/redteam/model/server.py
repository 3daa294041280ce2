"""The model's HTTP(S) server: routes, credentials check, streaming, transcript.

- ``POST /v1/messages``: a scripted reply (:mod:`.script`), streamed as SSE
  (chunked, one chunk per event) when the request asks for ``stream``.
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": n}``.
- ``GET /v1/models``: the models the request may name.
- Anything else: recorded, and answered the way the real service answers an
  unknown route (404 with the API's error shape), so a client that probes
  something new shows up in the transcript instead of breaking the run.

When a loaded scripts file lists ``accept_keys_sha256``, the Messages routes
answer 401 unless the request carries one of those keys (``x-api-key`` or
``Authorization: Bearer``), like the real API; every request's key is
recorded as a fingerprint either way.
TLS handshakes run in the request's thread, never in the accept loop.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import protocol as p
from . import script as s
from .transcript import Transcript, body_record, credential_value, headers_record

MAX_REQUEST = 64 * 1024 * 1024
IO_TIMEOUT = 60.0
MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")


@dataclass
class Model:
    """Everything a request handler needs, shared by all threads."""

    library: s.Library
    transcript: Transcript

    def key_ok(self, headers: Iterable[tuple[str, str]]) -> bool:
        accepted = self.library.accepted_keys()
        if not accepted:
            return True
        for name, value in headers:
            lower = name.lower()
            if lower in ("x-api-key", "authorization"):
                if hashlib.sha256(credential_value(lower, value).encode()).hexdigest() in accepted:
                    return True
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ModelServer
    server_version = "yolo-cage-model/1"
    sys_version = ""

    def setup(self) -> None:
        self.request.settimeout(IO_TIMEOUT)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError, socket.timeout):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return  # the transcript is the log

    # --- routing ------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch()

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        body = self._body()
        if body is None:
            return
        shown, credentials = headers_record(self.headers.items())
        base = {"method": self.command, "host": self.headers.get("Host", ""), "sni": getattr(self.request, "yc_sni", None),
                "path": url.path, "query": url.query, "headers": shown, "credentials": credentials,
                "http_version": self.request_version, "peer": self.client_address[0]}
        model = self.server.model
        route = (self.command, url.path.rstrip("/"))
        if route in (("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")) and not model.key_ok(self.headers.items()):
            self._json(401, p.error_body("authentication_error", "invalid x-api-key"))
            model.transcript.record("rejected", **base, status=401, reason="no accepted API key")
            return
        if route == ("POST", "/v1/messages"):
            self._messages(body, base)
        elif route == ("POST", "/v1/messages/count_tokens"):
            self._count_tokens(body, base)
        elif route == ("GET", "/v1/models"):
            self._json(200, {"data": [{"type": "model", "id": m, "display_name": m} for m in MODELS],
                             "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
            model.transcript.record("models", **base, status=200)
        else:
            self._json(404, p.error_body("not_found_error", f"{self.command} {url.path}: not served by the yolo-cage test model"))
            model.transcript.record("unknown", **base, status=404, **body_record(body))

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST:
            self._json(413 if length > 0 else 400, p.error_body("invalid_request_error", "bad Content-Length"))
            return None
        return self.rfile.read(length) if length else b""

    def _chunked(self) -> bytes | None:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():
                    pass
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()
            if len(out) > MAX_REQUEST:
                self._json(413, p.error_body("request_too_large", "request too large"))
                return None

    # --- the Messages API -------------------------------------------------------------------

    def _messages(self, body: bytes, base: dict[str, Any]) -> None:
        transcript = self.server.model.transcript
        try:
            request = p.MessagesRequest.parse(body)
        except p.RequestError as exc:
            self._json(400, p.error_body("invalid_request_error", str(exc)))
            transcript.record("messages", **base, status=400, error=str(exc), **body_record(body))
            return
        decision = s.decide(request, self.server.model.library)
        tokens = p.estimate_tokens(request.raw.get("messages"))
        mid = p.message_id(body)
        blocks = [p.block_json(b) for b in decision.blocks]
        transcript.record(
            "messages", **base, status=200, model=request.model, stream=request.stream, tools=list(request.tools),
            n_messages=len(request.messages), system_chars=len(request.system_text), decision=decision.kind,
            scenario=decision.scenario, run=decision.run, step=decision.step, results=list(decision.results),
            reply=blocks, last_user=_last_user(request),
        )
        if request.stream:
            self._stream(p.stream_events(mid, request.model, decision.blocks, tokens))
        else:
            self._json(200, p.message(mid, request.model, decision.blocks, tokens))

    def _count_tokens(self, body: bytes, base: dict[str, Any]) -> None:
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
                raise ValueError("messages: a list is required")
        except ValueError as exc:
            self._json(400, p.error_body("invalid_request_error", str(exc)))
            self.server.model.transcript.record("count_tokens", **base, status=400, error=str(exc))
            return
        count = p.estimate_tokens({k: doc.get(k) for k in ("system", "messages", "tools")})
        self._json(200, {"input_tokens": count})
        self.server.model.transcript.record("count_tokens", **base, status=200, input_tokens=count)

    # --- writing ------------------------------------------------------------------------

    def _json(self, status: int, doc: Mapping[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_yc" + hashlib.sha256(data).hexdigest()[:20])
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _stream(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event, data in events:
            frame = p.sse(event, data)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _last_user(request: p.MessagesRequest) -> str:
    """The newest user text, shortened: enough to see what a side call was about."""
    texts = request.user_texts()
    return texts[-1][:300] if texts else ""


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], model: Model, tls: ssl.SSLContext | None = None):
        self.model = model
        self.tls = tls
        if tls is not None:
            tls.sni_callback = _remember_sni
        super().__init__(address, Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="yolo-cage-model",
                                  daemon=True)
        thread.start()
        return thread


def _remember_sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
    sock.yc_sni = name  # type: ignore[attr-defined]


def tls_context(cert_chain: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_chain, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def build(scripts: Path, transcript_dir: Path) -> Model:
    return Model(s.Library(scripts), Transcript(transcript_dir))
