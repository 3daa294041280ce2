"""Content scanning: exactly one scanner call per request, CONNECT or WebSocket message.

The call carries the URL (path and query), every header (trailers too) and
the raw body as sent, still Content-Encoded: the scanner decodes. A CONNECT is
scanned too (its target name) before that name is ever resolved, so a secret
hidden in a host name does not leak through DNS.

A request that HTTP/1 frames without a body (no Content-Length or 0, no
Transfer-Encoding: a GET) is complete at ``requestheaders``: its scan starts
there, once every earlier check passed, and runs while mitmproxy finishes
reading the request; ``request`` waits for its answer. Still one call.
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy import http

from addon import scanning
from addon.credentials import Check, scan_mode, without_locations
from addon.decision import Decision, allow, block
from addon.hostnames import Host
from addon.mitm.destinations import TARGET
from addon.mitm.credentials import CHECK, EXEMPT
from addon.mitm.identity import HEADER
from addon.mitm.runtime import AGENT, SCAN, Config, Runtime, ScanInfo
from addon.mitm.safety import TAINTED, drop_websocket_message, guard
from addon.scanning import ScanFailure

SCAN_DECISION = "yolo_cage.scan_decision"
EARLY = "yolo_cage.early_scan"  # the scan of a bodiless request, started at requestheaders


def _url(req: http.Request, host: Host) -> str:
    default = 443 if req.scheme == "https" or req.method == "CONNECT" else 80
    netloc = f"[{host.name}]" if ":" in host.name else host.name
    if req.port != default:
        netloc += f":{req.port}"
    if req.method == "CONNECT":
        return f"https://{netloc}/"
    return f"{req.scheme}://{netloc}{req.data.path.decode('utf-8', 'backslashreplace')}"


def _bodiless(req: http.Request) -> bool:
    """HTTP/1 frames this request without a body (RFC 9112 6.3): it is complete at requestheaders."""
    if not req.http_version.startswith("HTTP/1") or "transfer-encoding" in req.headers:
        return False
    return req.headers.get_all("content-length") in ([], ["0"])


_PROXY_AUTHORIZATION = HEADER.lower().encode()


def _headers(req: http.Request) -> list[tuple[bytes, bytes]]:
    fields = [(k, v) for k, v in req.headers.fields if k.lower() != _PROXY_AUTHORIZATION]
    if req.trailers:
        fields += list(req.trailers.fields)
    return fields


class ContentScan:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if not self.runtime.decided(flow):
            await self._scan_request(flow, b"")

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        flow.request.stream = False  # the whole body is scanned before anything is sent
        if self.runtime.decided(flow):
            return
        config = self.runtime.require_config()
        length = flow.request.headers.get("content-length", "")
        if length.isdigit() and int(length) > config.policy.scan.max_body_bytes:
            self._oversize(flow, config, int(length))
        elif _bodiless(flow.request):
            flow.metadata[EARLY] = asyncio.ensure_future(self._scan_payload(flow, b""))

    @guard
    async def request(self, flow: http.HTTPFlow) -> None:
        early: asyncio.Future[tuple[Decision, ScanInfo]] | None = flow.metadata.pop(EARLY, None)
        if self.runtime.decided(flow):
            if early is not None:
                early.cancel()
            return
        config = self.runtime.require_config()
        body = flow.request.raw_content or b""
        if early is not None:
            if body or flow.request.trailers:
                early.cancel()
                raise RuntimeError("a request framed without a body came with one")  # guard: refused
            self._record(flow, *await early)
            return
        if len(body) > config.policy.scan.max_body_bytes:
            self._oversize(flow, config, len(body))
            return
        await self._scan_request(flow, body)

    def _oversize(self, flow: http.HTTPFlow, config: Config, size: int) -> None:
        limit = config.policy.scan.max_body_bytes
        failure = ScanFailure("body-too-large", f"the body ({size} bytes) is over the scan limit ({limit} bytes)")
        decision = scanning.decide(failure, "enforce", config.policy.scan.unsafe_fail_open)
        flow.metadata[SCAN] = ScanInfo(mode="enforce")
        self._apply(flow, decision)

    async def _scan_request(self, flow: http.HTTPFlow, body: bytes) -> None:
        self._record(flow, *await self._scan_payload(flow, body))

    def _record(self, flow: http.HTTPFlow, decision: Decision, info: ScanInfo) -> None:
        flow.metadata[SCAN] = info
        self._apply(flow, decision)

    async def _scan_payload(self, flow: http.HTTPFlow, body: bytes) -> tuple[Decision, ScanInfo]:
        config = self.runtime.require_config()
        target: Host = flow.metadata[TARGET]
        payload = scanning.build_request(
            request_id=flow.id,
            agent=flow.metadata.get(AGENT),
            destination=target.name,
            kind="http",
            method=flow.request.method,
            url=_url(flow.request, target),
            headers=_headers(flow.request),
            body=body,
        )
        return await self._scan(config, target.name, payload, flow.metadata.get(CHECK), flow.metadata.get(EXEMPT, frozenset()))

    async def _scan(
        self, config: Config, host: str, payload: bytes, check: Check | None, exempt: frozenset[str] = frozenset()
    ) -> tuple[Decision, ScanInfo]:
        scan_policy = config.policy.scan
        mode = scan_mode(scan_policy.mode_for(host), check or Check())
        if mode == "off":
            return allow("scan-off", "scan.mode"), ScanInfo(mode="off")
        started = time.perf_counter()
        # A credential in its own bound place (its placeholder, or a passthrough value) is not a leak.
        outcome = without_locations(await config.scanner.scan(payload, scan_policy.deadline_ms / 1000), exempt)
        elapsed = (time.perf_counter() - started) * 1000
        decision = scanning.decide(outcome, mode, scan_policy.unsafe_fail_open)
        if isinstance(outcome, ScanFailure):
            return decision, ScanInfo(mode=mode, scan_ms=elapsed)
        return decision, ScanInfo(mode=mode, findings=outcome.findings, scan_ms=elapsed, scanned=True)

    def _apply(self, flow: http.HTTPFlow, decision: Decision) -> None:
        if decision.allowed:
            flow.metadata[SCAN_DECISION] = decision  # the upstream gate makes it final
        else:
            self.runtime.finish(flow, decision)

    @guard
    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        index = len(flow.websocket.messages) - 1
        message = flow.websocket.messages[index]
        if not message.from_client or message.dropped:
            return  # a message an earlier hook dropped was recorded by it
        if flow.metadata.get(TAINTED):
            message.drop()
            info = ScanInfo(mode="enforce")
            refused = block("websocket-blocked", "scan", "an earlier message on this WebSocket was blocked")
            self.runtime.audit_message(flow, refused, index, len(message.content), info)
            return
        config = self.runtime.require_config()
        target: Host = flow.metadata[TARGET]
        payload = scanning.build_request(
            request_id=f"{flow.id}.ws{index}",
            agent=flow.metadata.get(AGENT),
            destination=target.name,
            kind="websocket",
            method=flow.request.method,
            url=_url(flow.request, target),
            headers=[],
            body=message.content,
        )
        decision, info = await self._scan(config, target.name, payload, flow.metadata.get(CHECK))
        if not decision.allowed:
            drop_websocket_message(flow)
        if not self.runtime.audit_message(flow, decision, index, len(message.content), info):
            drop_websocket_message(flow)  # a message that cannot be recorded does not go out
