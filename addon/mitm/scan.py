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
from collections.abc import Callable

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
from addon.scanning import Outcome, ScanFailure

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


class _Pending:
    """A scan under way (or none, in scan mode off): :meth:`result` gives its decision."""

    __slots__ = ("exempt", "fail_open", "future", "mode", "started")

    def __init__(self, mode: str, future: asyncio.Future[Outcome] | None, exempt: frozenset[str], fail_open: bool,
                 started: float):
        self.mode, self.future, self.exempt, self.fail_open, self.started = mode, future, exempt, fail_open, started

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()

    async def result(self) -> tuple[Decision, ScanInfo]:
        if self.future is None:
            return allow("scan-off", "scan.mode"), ScanInfo(mode="off")
        # A credential in its own bound place (its placeholder, or a passthrough value) is not a leak.
        outcome = without_locations(await self.future, self.exempt)
        elapsed = (time.perf_counter() - self.started) * 1000
        decision = scanning.decide(outcome, self.mode, self.fail_open)
        if isinstance(outcome, ScanFailure):
            return decision, ScanInfo(mode=self.mode, scan_ms=elapsed)
        return decision, ScanInfo(mode=self.mode, findings=outcome.findings, scan_ms=elapsed, scanned=True)


def _framing(fields: tuple[tuple[bytes, bytes], ...]) -> tuple[list[bytes], bool]:
    """Every Content-Length value, and whether a Transfer-Encoding is present: one pass over the raw fields."""
    lengths: list[bytes] = []
    transfer_encoded = False
    for name, value in fields:
        name = name.lower()
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            transfer_encoded = True
    return lengths, transfer_encoded


def _bodiless(req: http.Request, lengths: list[bytes], transfer_encoded: bool) -> bool:
    """HTTP/1 frames this request without a body (RFC 9112 6.3): it is complete at requestheaders."""
    return req.http_version.startswith("HTTP/1") and not transfer_encoded and lengths in ([], [b"0"])


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
            self._record(flow, *await self._begin(flow, b"").result())

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        flow.request.stream = False  # the whole body is scanned before anything is sent
        if self.runtime.decided(flow):
            return
        config = self.runtime.require_config()
        lengths, transfer_encoded = _framing(flow.request.headers.fields)
        if len(lengths) == 1 and lengths[0].isdigit() and int(lengths[0]) > config.policy.scan.max_body_bytes:
            self._oversize(flow, config, int(lengths[0]))
        elif _bodiless(flow.request, lengths, transfer_encoded):
            flow.metadata[EARLY] = self._begin(flow, b"")

    @guard
    async def request(self, flow: http.HTTPFlow) -> None:
        early: _Pending | None = flow.metadata.pop(EARLY, None)
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
            self._record(flow, *await early.result())
            return
        if len(body) > config.policy.scan.max_body_bytes:
            self._oversize(flow, config, len(body))
            return
        self._record(flow, *await self._begin(flow, body).result())

    def _oversize(self, flow: http.HTTPFlow, config: Config, size: int) -> None:
        limit = config.policy.scan.max_body_bytes
        failure = ScanFailure("body-too-large", f"the body ({size} bytes) is over the scan limit ({limit} bytes)")
        decision = scanning.decide(failure, "enforce", config.policy.scan.unsafe_fail_open)
        flow.metadata[SCAN] = ScanInfo(mode="enforce")
        self._apply(flow, decision)

    def _record(self, flow: http.HTTPFlow, decision: Decision, info: ScanInfo) -> None:
        flow.metadata[SCAN] = info
        self._apply(flow, decision)

    def _begin(self, flow: http.HTTPFlow, body: bytes) -> _Pending:
        """Send the request's scan now; its decision comes from ``result()``."""
        target: Host = flow.metadata[TARGET]
        return self._start(
            self.runtime.require_config(), target.name, flow.metadata.get(CHECK), flow.metadata.get(EXEMPT, frozenset()),
            lambda: scanning.build_request(
                request_id=flow.id,
                agent=flow.metadata.get(AGENT),
                destination=target.name,
                kind="http",
                method=flow.request.method,
                url=_url(flow.request, target),
                headers=_headers(flow.request),
                body=body,
            ),
        )

    @staticmethod
    def _start(
        config: Config, host: str, check: Check | None, exempt: frozenset[str], payload: Callable[[], bytes]
    ) -> _Pending:
        scan_policy = config.policy.scan
        mode = scan_mode(scan_policy.mode_for(host), check or Check())
        if mode == "off":
            return _Pending(mode, None, exempt, scan_policy.unsafe_fail_open, 0.0)
        data = payload()
        started = time.perf_counter()
        future = config.scanner.start(data, scan_policy.deadline_ms / 1000)
        return _Pending(mode, future, exempt, scan_policy.unsafe_fail_open, started)

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
        target: Host = flow.metadata[TARGET]
        pending = self._start(
            self.runtime.require_config(), target.name, flow.metadata.get(CHECK), frozenset(),
            lambda: scanning.build_request(
                request_id=f"{flow.id}.ws{index}",
                agent=flow.metadata.get(AGENT),
                destination=target.name,
                kind="websocket",
                method=flow.request.method,
                url=_url(flow.request, target),
                headers=[],
                body=message.content,
            ),
        )
        decision, info = await pending.result()
        if not decision.allowed:
            drop_websocket_message(flow)
        if not self.runtime.audit_message(flow, decision, index, len(message.content), info):
            drop_websocket_message(flow)  # a message that cannot be recorded does not go out
