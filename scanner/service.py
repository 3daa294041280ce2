"""The HTTP service (scanner/http1.py): the native scan endpoint, the LLM-Guard one, probes, metrics.

Scans run in a bounded thread pool so /healthz answers while a big body is
scanned; at most `workers` run at once and at most `max_queue` wait (more: 503).
A scan request of at most INLINE_MAX bytes (a GET, a small API call) is scanned
on the event loop instead: it takes about 0.05 ms, less than the hop to a thread
and back, and the proxy waits for it on every request.
The service never logs a request body, a header value or a finding's secret.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from scanner.core import Result, Scanner
from scanner.errors import BadScanRequest
from scanner.http1 import Limits, Request, Response, Server
from scanner.metrics import Metrics
from scanner.request import ScanRequest

log = logging.getLogger("scanner.service")

INLINE_MAX = 16 * 1024
T = TypeVar("T")
Answer = Response | Awaitable[Response]


def _json(data: object, status: int = 200) -> Response:
    return Response(status, orjson.dumps(data))


def _error(status: int, code: str, detail: str) -> Response:
    return _json({"error": code, "detail": detail}, status)


def parse_scan_request(doc: object) -> ScanRequest:
    """Validate the native request body (docs/architecture.md). Raises BadScanRequest."""
    if not isinstance(doc, dict):
        raise BadScanRequest("the request must be a JSON object")
    unknown = set(doc) - {"request_id", "agent", "destination", "kind", "method", "url", "headers", "body_b64"}
    if unknown:
        raise BadScanRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    for name in ("request_id", "destination", "method", "url", "body_b64"):
        if not isinstance(doc.get(name, ""), str):
            raise BadScanRequest(f"{name} must be a string")
    agent = doc.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise BadScanRequest("agent must be a string or null")
    kind = doc.get("kind", "http")
    if kind not in ("http", "websocket"):
        raise BadScanRequest("kind must be 'http' or 'websocket'")
    headers = doc.get("headers", [])
    if not isinstance(headers, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in headers
    ):
        raise BadScanRequest("headers must be a list of [name, value] string pairs")
    try:
        body = binascii.a2b_base64(doc.get("body_b64", "").encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise BadScanRequest(f"body_b64 is not valid base64: {exc}") from None
    return ScanRequest(url=doc.get("url", ""), headers=tuple((h[0], h[1]) for h in headers), body=body, kind=kind,
                       method=doc.get("method", ""), agent=agent, destination=doc.get("destination", ""),
                       request_id=doc.get("request_id", ""))


def _read_json(request: Request) -> object:
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise BadScanRequest(f"the request body is not JSON: {exc}") from None


class ListenError(Exception):
    """The service cannot listen on the address it was given."""


class ScanService:
    """The routes on one Scanner; `handle` and `on_error` are the http1.Server's callbacks."""

    def __init__(self, scanner: Scanner):
        self.scanner = scanner
        self.metrics = Metrics()
        self.pool = ThreadPoolExecutor(max_workers=scanner.cfg.workers, thread_name_prefix="scan")
        self.slots = asyncio.Semaphore(scanner.cfg.workers)
        self._busy_at = scanner.cfg.max_queue + scanner.cfg.workers
        self._watcher: asyncio.Task[None] | None = None
        self.routes: dict[str, dict[str, Callable[[Request], Answer]]] = {
            "/v1/scan": {"POST": self.scan},
            "/analyze/prompt": {"POST": self.analyze_prompt},
            "/healthz": {"GET": self.healthz},
            "/readyz": {"GET": self.readyz},
            "/metrics": {"GET": self.metrics_text},
        }

    # -- the server's callbacks

    def handle(self, request: Request) -> Answer:
        methods = self.routes.get(request.path)
        if methods is None:
            return _error(404, "not-found", "no such endpoint")
        fn = methods.get(request.method)
        if fn is None:
            return Response(405, orjson.dumps({"error": "method-not-allowed", "detail": f"use {', '.join(methods)}"}),
                            headers=(("Allow", ", ".join(methods)),))
        try:
            answer = fn(request)
        except Exception:  # never take the service down; the proxy blocks on 500
            return self._internal()
        return answer if isinstance(answer, Response) else self._guarded(answer)

    def on_error(self, status: int, code: str, detail: str) -> Response:
        if code == "too-large":
            self.metrics.errors["too-large"] += 1
        return _error(status, code, detail)

    async def _guarded(self, answer: Awaitable[Response]) -> Response:
        try:
            return await answer
        except Exception:
            return self._internal()

    def _internal(self) -> Response:
        log.exception("scan failed")
        self.metrics.errors["internal"] += 1
        return _error(500, "internal", "the scanner failed on this request; see its log")

    # -- where a scan runs

    def _run(self, size: int, fn: Callable[[Any], T], arg: Any, done: Callable[[T], Response]) -> Answer:
        """Inline when small, else in the pool; 503 when `workers` run and `max_queue` wait already."""
        metrics = self.metrics
        if metrics.inflight >= self._busy_at:
            metrics.errors["busy"] += 1
            return _json({"error": "busy"}, 503)
        metrics.inflight += 1
        if size > INLINE_MAX:
            return self._pooled(fn, arg, done)
        try:
            result = fn(arg)
        finally:
            metrics.inflight -= 1
        return done(result)

    async def _pooled(self, fn: Callable[[Any], T], arg: Any, done: Callable[[T], Response]) -> Response:
        try:  # inflight was counted when the request was taken, so the busy check sees it at once
            async with self.slots:
                result = await asyncio.get_running_loop().run_in_executor(self.pool, fn, arg)
        finally:
            self.metrics.inflight -= 1
        return done(result)

    # -- routes

    def scan(self, request: Request) -> Answer:
        try:
            req = parse_scan_request(_read_json(request))
        except BadScanRequest as exc:
            self.metrics.errors["bad-request"] += 1
            return _error(400, "bad-request", str(exc))
        return self._run(len(request.body), self.scanner.scan_request, req, self._scanned)

    def _scanned(self, result: Result) -> Response:
        self.metrics.observe("scan", result.verdict, result.scan_ms, result.bytes_scanned, result.findings, result.errors,
                             result.dropped)
        return _json(result.to_json())

    def analyze_prompt(self, request: Request) -> Answer:
        try:
            doc = _read_json(request)
        except BadScanRequest as exc:
            return _error(400, "bad-request", str(exc))
        if not isinstance(doc, dict) or not isinstance(doc.get("prompt"), str):
            self.metrics.errors["bad-request"] += 1
            return _error(400, "bad-request", 'expected {"prompt": "<text>"}')
        return self._run(len(request.body), self.scanner.scan_text, doc["prompt"], self._analyzed)

    def _analyzed(self, answer: tuple[Result, str]) -> Response:
        result, sanitized = answer
        self.metrics.observe("analyze_prompt", result.verdict, result.scan_ms, result.bytes_scanned, result.findings,
                             result.errors)
        valid = result.verdict == "clean"
        # LLM-Guard's shape: a risk score per scanner, -1.0 when nothing was found.
        return _json({"is_valid": valid, "scanners": {"Secrets": -1.0 if valid else 1.0}, "sanitized_prompt": sanitized})

    def healthz(self, _: Request) -> Response:
        return _json({"status": "ok"})

    def readyz(self, _: Request) -> Response:
        sc = self.scanner
        return _json({"ready": True, "rules": len(sc.rules), "secrets_loaded": len(sc.loaded.secrets),
                      "secrets_skipped": list(sc.loaded.skipped), "fingerprint_key": sc.key_source, "reloads": sc.reloads})

    def metrics_text(self, _: Request) -> Response:
        m, sc = self.metrics, self.scanner
        m.gauges["secrets_loaded"] = len(sc.loaded.secrets)
        m.gauges["rules"] = len(sc.rules)
        return Response(200, m.render().encode(), "text/plain; charset=utf-8", (("X-Content-Type-Options", "nosniff"),))

    # -- lifetime

    def start(self) -> None:
        if self.scanner.cfg.secrets_dir:
            self._watcher = asyncio.create_task(self._watch_secrets())

    async def _watch_secrets(self) -> None:
        sc = self.scanner
        while True:
            await asyncio.sleep(sc.cfg.secrets_poll_s)
            try:
                await asyncio.get_running_loop().run_in_executor(None, sc.reload_if_changed)
            except Exception:
                log.exception("secrets reload failed; keeping the previous set")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        self.pool.shutdown(wait=False, cancel_futures=True)


async def start(scanner: Scanner, host: str, port: int, limits: Limits | None = None) -> tuple[ScanService, Server]:
    """Listen on host:port; the caller stops the Server, then closes the ScanService."""
    service = ScanService(scanner)
    server = Server(service.handle, service.on_error, limits or Limits(max_body=scanner.cfg.max_request_bytes))
    try:
        await server.start(host, port)
    except OSError as exc:
        await service.close()
        raise ListenError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    service.start()
    return service, server


async def run(scanner: Scanner, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT: stop accepting, finish answers in progress (bounded), stop the pool."""
    service, server = await start(scanner, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening on %s port %d", host, server.port)
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        await server.stop()
        await service.close()
