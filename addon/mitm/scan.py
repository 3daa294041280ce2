"""Content scanning: exactly one scanner call per request, CONNECT or WebSocket message.

The call carries the URL (path and query), every header (trailers too) and
the raw body as sent, still Content-Encoded: the scanner decodes. A CONNECT is
scanned too (its target name) before that name is ever resolved, so a secret
hidden in a host name does not leak through DNS.

A request that HTTP/1 frames without a body (no Content-Length or 0, no
Transfer-Encoding: a GET) is complete at ``requestheaders``: :class:`EarlyScan`
sends its scan there, as soon as the agent and the destination are known, and
the scanner works while the rules, git and credential checks run and mitmproxy
finishes the request; ``request`` waits for its answer. Still one call. A
request those checks refuse stays refused: its scan's answer is discarded.
(Sending it after them put the scanner's whole round trip, about 0.1 ms more
than mitmproxy's own work in between, on every small request's path.)
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

    __slots__ = ("fail_open", "future", "mode", "started")

    def __init__(self, mode: str, future: asyncio.Future[Outcome] | None, fail_open: bool, started: float):
        self.mode, self.future, self.fail_open, self.started = mode, future, fail_open, started

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()

    async def result(self, check: Check | None, exempt: frozenset[str] = frozenset()) -> tuple[Decision, ScanInfo]:
        """The decision under the destination's mode as the credential check leaves it (report can become enforce)."""
        if self.future is None:
            return allow("scan-off", "scan.mode"), ScanInfo(mode="off")
        mode = scan_mode(self.mode, check or Check())
        # A credential in its own bound place (its placeholder, or a passthrough value) is not a leak.
        outcome = without_locations(await self.future, exempt)
        elapsed = (time.perf_counter() - self.started) * 1000
        decision = scanning.decide(outcome, mode, self.fail_open)
        if isinstance(outcome, ScanFailure):
            return decision, ScanInfo(mode=mode, scan_ms=elapsed)
        return decision, ScanInfo(mode=mode, findings=outcome.findings, scan_ms=elapsed, scanned=True)


def start_scan(config: Config, host: str, payload: Callable[[], bytes]) -> _Pending:
    """Send a scan now unless the destination's mode is ``off`` (no credential check turns ``off`` on)."""
    scan_policy = config.policy.scan
    mode = scan_policy.mode_for(host)
    if mode == "off":
        return _Pending(mode, None, scan_policy.unsafe_fail_open, 0.0)
    data = payload()
    started = time.perf_counter()
    return _Pending(mode, config.scanner.start(data, scan_policy.deadline_ms / 1000), scan_policy.unsafe_fail_open, started)


def scan_flow(runtime: Runtime, flow: http.HTTPFlow, body: bytes) -> _Pending:
    """Send the scan of a request (or of a CONNECT's target)."""
    target: Host = flow.metadata[TARGET]
    return start_scan(
        runtime.require_config(), target.name,
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


class EarlyScan:
    """Sends a bodiless request's scan at ``requestheaders``, right after the identity and destination gates."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not self.runtime.decided(flow) and _bodiless(flow.request, *_framing(flow.request.headers.fields)):
            flow.metadata[EARLY] = scan_flow(self.runtime, flow, b"")


class ContentScan:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if not self.runtime.decided(flow):
            self._record(flow, *await self._result(flow, scan_flow(self.runtime, flow, b"")))

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        flow.request.stream = False  # the whole body is scanned before anything is sent
        if self.runtime.decided(flow) or EARLY in flow.metadata:
            return  # a bodiless request (EarlyScan read its framing already) cannot be over the limit
        config = self.runtime.require_config()
        lengths, _ = _framing(flow.request.headers.fields)
        if len(lengths) == 1 and lengths[0].isdigit() and int(lengths[0]) > config.policy.scan.max_body_bytes:
            self._oversize(flow, config, int(lengths[0]))

    @guard
    async def request(self, flow: http.HTTPFlow) -> None:
        early: _Pending | None = flow.metadata.pop(EARLY, None)
        if self.runtime.decided(flow):
            if early is not None:
                early.cancel()  # refused by a later check meanwhile: its answer does not matter
            return
        config = self.runtime.require_config()
        body = flow.request.raw_content or b""
        if early is not None:
            if body or flow.request.trailers:
                early.cancel()
                raise RuntimeError("a request framed without a body came with one")  # guard: refused
            self._record(flow, *await self._result(flow, early))
            return
        if len(body) > config.policy.scan.max_body_bytes:
            self._oversize(flow, config, len(body))
            return
        self._record(flow, *await self._result(flow, scan_flow(self.runtime, flow, body)))

    @staticmethod
    async def _result(flow: http.HTTPFlow, pending: _Pending) -> tuple[Decision, ScanInfo]:
        return await pending.result(flow.metadata.get(CHECK), flow.metadata.get(EXEMPT, frozenset()))

    def _oversize(self, flow: http.HTTPFlow, config: Config, size: int) -> None:
        limit = config.policy.scan.max_body_bytes
        failure = ScanFailure("body-too-large", f"the body ({size} bytes) is over the scan limit ({limit} bytes)")
        decision = scanning.decide(failure, "enforce", config.policy.scan.unsafe_fail_open)
        flow.metadata[SCAN] = ScanInfo(mode="enforce")
        self._apply(flow, decision)

    def _record(self, flow: http.HTTPFlow, decision: Decision, info: ScanInfo) -> None:
        flow.metadata[SCAN] = info
        self._apply(flow, decision)

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
        pending = start_scan(
            self.runtime.require_config(), target.name,
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
        decision, info = await pending.result(flow.metadata.get(CHECK))
        if not decision.allowed:
            drop_websocket_message(flow)
        if not self.runtime.audit_message(flow, decision, index, len(message.content), info):
            drop_websocket_message(flow)  # a message that cannot be recorded does not go out
