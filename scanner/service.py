"""The HTTP service (aiohttp): the native scan endpoint, the LLM-Guard one, probes, metrics.

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
from concurrent.futures import ThreadPoolExecutor

import orjson
from aiohttp import web

from scanner.core import Result, Scanner
from scanner.errors import BadScanRequest
from scanner.metrics import Metrics
from scanner.request import ScanRequest

log = logging.getLogger("scanner.service")

SCANNER = web.AppKey("scanner", Scanner)
POOL = web.AppKey("pool", ThreadPoolExecutor)
METRICS = web.AppKey("metrics", Metrics)
SLOTS = web.AppKey("slots", asyncio.Semaphore)
INLINE_MAX = 16 * 1024


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, code: str, detail: str) -> web.Response:
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


async def _read_json(request: web.Request) -> object:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadScanRequest(f"the request body is not JSON: {exc}") from None


async def _run(request: web.Request, fn, *args):
    app = request.app
    slots, metrics = app[SLOTS], app[METRICS]
    if metrics.inflight >= app[SCANNER].cfg.max_queue + app[SCANNER].cfg.workers:
        metrics.errors["busy"] += 1
        raise web.HTTPServiceUnavailable(text='{"error": "busy"}', content_type="application/json")
    metrics.inflight += 1
    try:
        length = request.content_length
        if length is not None and length <= INLINE_MAX:
            return fn(*args)
        async with slots:
            return await asyncio.get_running_loop().run_in_executor(app[POOL], fn, *args)
    finally:
        metrics.inflight -= 1


async def scan(request: web.Request) -> web.Response:
    try:
        req = parse_scan_request(await _read_json(request))
    except BadScanRequest as exc:
        request.app[METRICS].errors["bad-request"] += 1
        return _error(400, "bad-request", str(exc))
    result: Result = await _run(request, request.app[SCANNER].scan_request, req)
    request.app[METRICS].observe("scan", result.verdict, result.scan_ms, result.bytes_scanned, result.findings, result.errors,
                                 result.dropped)
    return _json(result.to_json())


async def analyze_prompt(request: web.Request) -> web.Response:
    try:
        doc = await _read_json(request)
    except BadScanRequest as exc:
        return _error(400, "bad-request", str(exc))
    if not isinstance(doc, dict) or not isinstance(doc.get("prompt"), str):
        request.app[METRICS].errors["bad-request"] += 1
        return _error(400, "bad-request", 'expected {"prompt": "<text>"}')
    result, sanitized = await _run(request, request.app[SCANNER].scan_text, doc["prompt"])
    request.app[METRICS].observe("analyze_prompt", result.verdict, result.scan_ms, result.bytes_scanned, result.findings, result.errors)
    valid = result.verdict == "clean"
    # LLM-Guard's shape: a risk score per scanner, -1.0 when nothing was found.
    return _json({"is_valid": valid, "scanners": {"Secrets": -1.0 if valid else 1.0}, "sanitized_prompt": sanitized})


async def healthz(_: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    sc = request.app[SCANNER]
    return _json({"ready": True, "rules": len(sc.rules), "secrets_loaded": len(sc.loaded.secrets),
                  "secrets_skipped": list(sc.loaded.skipped), "fingerprint_key": sc.key_source, "reloads": sc.reloads})


async def metrics(request: web.Request) -> web.Response:
    m, sc = request.app[METRICS], request.app[SCANNER]
    m.gauges["secrets_loaded"] = len(sc.loaded.secrets)
    m.gauges["rules"] = len(sc.rules)
    return web.Response(text=m.render(), content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})


@web.middleware
async def _errors(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        request.app[METRICS].errors["too-large"] += 1
        return _error(413, "too-large", exc.text or "request too large")
    except web.HTTPException:
        raise
    except Exception:  # never take the service down; the proxy blocks on 500
        log.exception("scan failed")
        request.app[METRICS].errors["internal"] += 1
        return _error(500, "internal", "the scanner failed on this request; see its log")


async def _watch_secrets(app: web.Application) -> None:
    sc = app[SCANNER]
    while True:
        await asyncio.sleep(sc.cfg.secrets_poll_s)
        try:
            await asyncio.get_running_loop().run_in_executor(None, sc.reload_if_changed)
        except Exception:
            log.exception("secrets reload failed; keeping the previous set")


async def _background(app: web.Application):
    task = asyncio.create_task(_watch_secrets(app)) if app[SCANNER].cfg.secrets_dir else None
    yield
    if task:
        task.cancel()
    app[POOL].shutdown(wait=False, cancel_futures=True)


def make_app(scanner: Scanner) -> web.Application:
    app = web.Application(client_max_size=scanner.cfg.max_request_bytes, middlewares=[_errors])
    app[SCANNER] = scanner
    app[POOL] = ThreadPoolExecutor(max_workers=scanner.cfg.workers, thread_name_prefix="scan")
    app[METRICS] = Metrics()
    app[SLOTS] = asyncio.Semaphore(scanner.cfg.workers)
    app.router.add_post("/v1/scan", scan)
    app.router.add_post("/analyze/prompt", analyze_prompt)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(_background)
    return app
