"""Destination gate: name policy at the earliest hook, host agreement, raw tunnels.

CONNECT is judged in ``http_connect`` before anything else happens; a plain
request in ``requestheaders``. Requests inside a tunnel must name the
tunnel's host (Host header, :authority and TLS SNI alike). Non-HTTP traffic in
a tunnel is refused in ``tcp_start`` (and its upstream connection with it).
The address check happens later, after the scan (see :mod:`addon.mitm.upstream`),
so that a secret in a host name never reaches a DNS resolver.
"""

from __future__ import annotations

from mitmproxy import ctx, http, tcp

from addon.decision import block
from addon.destinations import agreement, decide_name, decide_raw_tunnel
from addon.mitm.responses import refusal
from addon.mitm import runtime as rt
from addon.mitm.runtime import Runtime, log
from addon.mitm.safety import guard

TARGET = rt.TARGET


def _is_websocket_upgrade(flow: http.HTTPFlow) -> bool:
    """mitmproxy's own test for a WebSocket handshake (the WebSocket layer scans those messages)."""
    assert flow.response is not None
    return (
        flow.response.headers.get("upgrade", "").lower() == "websocket"
        and flow.request.headers.get("Sec-WebSocket-Version", "") == "13"
        and bool(ctx.options.websocket)
    )


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Destinations:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    def http_connect(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        state = self.runtime.client(flow.client_conn)
        if state.tunnel is not None or flow.client_conn.tls:
            self.runtime.finish(flow, block("nested-connect", "destinations", "CONNECT inside a tunnel is denied"))
            return
        self._decide_name(flow)

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        state = self.runtime.client(flow.client_conn)
        if state.tunnel is None:
            self._plain(flow)
            return
        req = flow.request
        mismatch = agreement(
            target=(state.tunnel.name, state.tunnel_port),
            sni=flow.client_conn.sni,
            # Every Host header and the :authority: HTTP/2 may carry both, and an upstream
            # speaking HTTP/1.1 would route by the Host header.
            authorities=[*req.headers.get_all("Host"), req.authority, _authority(req.host, req.port)],
            default_port=443 if flow.client_conn.tls else 80,
        )
        if mismatch is not None:
            self.runtime.finish(flow, mismatch)
            return
        flow.metadata[TARGET] = state.tunnel

    def _plain(self, flow: http.HTTPFlow) -> None:
        if not self._decide_name(flow):
            return
        req = flow.request
        mismatch = agreement(
            target=(req.host, req.port),
            sni=None,
            authorities=req.headers.get_all("Host"),
            default_port=443 if req.scheme == "https" else 80,
        )
        if mismatch is not None:
            self.runtime.finish(flow, mismatch)

    def _decide_name(self, flow: http.HTTPFlow) -> bool:
        policy = self.runtime.require_config().destinations
        host, decision = decide_name(policy, flow.request.host, flow.request.port)
        if not decision.allowed or host is None:
            self.runtime.finish(flow, decision)
            return False
        flow.metadata[TARGET] = host
        return True

    @guard
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """A 101 that is not a WebSocket upgrade would turn the connection into an unscanned raw tunnel."""
        response = flow.response
        if response is None or response.status_code != 101 or _is_websocket_upgrade(flow):
            return
        decision = decide_raw_tunnel(self.runtime.require_config().destinations)
        if decision.allowed:
            log.warning("UNSAFE: raw TCP after HTTP 101 allowed by %s", decision.rule)
        else:
            self.runtime.client(flow.client_conn).raw_denied = True
            flow.response = refusal(decision, flow.id)
        self.runtime.audit_upgrade(flow, decision)

    @guard
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        # Second line: nothing crosses a raw tunnel this client connection was refused.
        if self.runtime.client(flow.client_conn).raw_denied and flow.messages:
            flow.messages[-1].content = b""

    @guard
    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        decision = decide_raw_tunnel(self.runtime.require_config().destinations)
        if not decision.allowed:
            self.runtime.client(flow.client_conn).raw_denied = True
        else:
            log.warning("UNSAFE: raw TCP tunnel allowed by %s", decision.rule)
        self.runtime.audit_tcp(flow, decision)
