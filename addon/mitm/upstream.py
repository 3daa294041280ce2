"""The last gate: resolve once, check the address, pin it, and enforce the pin at connect time.

After the request passed every other check (and its scan), the host name is
resolved once; every address must pass :func:`decide_addresses`; the request's
connection target becomes that IP (``request.data.host``; the Host header,
:authority and SNI keep the name), so mitmproxy never resolves anything.

``server_connect`` is the chokepoint for every upstream connection mitmproxy
opens, whatever opened it: the address must be one this client connection
had approved (and still pass the address policy), or the connection is refused.
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.tls import HTTP_ALPNS

from addon.decision import Decision, allow, block
from addon.destinations import decide_address, decide_addresses
from addon.hostnames import Host, HostError, parse_host
from addon.mitm.destinations import TARGET
from addon.mitm.runtime import AGENT, Config, Pin, Runtime, log
from addon.mitm.safety import guard
from addon.mitm.scan import SCAN_DECISION
from addon.resolver import ResolveError, resolve


def _scan_decision(flow: http.HTTPFlow) -> Decision:
    decision = flow.metadata.get(SCAN_DECISION)
    return allow() if decision is None else decision


class Upstream:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        target: Host = flow.metadata[TARGET]
        pin = await self._pin(self.runtime.require_config(), target, flow.request.port)
        if isinstance(pin, Decision):
            self.runtime.finish(flow, pin)
            return
        state = self.runtime.client(flow.client_conn)
        state.tunnel, state.tunnel_port = target, flow.request.port
        state.agent, state.authenticated = flow.metadata.get(AGENT), True
        state.pin(pin)
        self.runtime.finish(flow, _scan_decision(flow), address=pin.text)

    @guard
    async def request(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        target: Host = flow.metadata[TARGET]
        port = flow.request.port
        state = self.runtime.client(flow.client_conn)
        pin = state.pins.get((target.name, port))
        if pin is None:
            if state.tunnel is not None:
                raise RuntimeError("a request inside a tunnel has no pinned address")
            pin = await self._pin(self.runtime.require_config(), target, port)
            if isinstance(pin, Decision):
                self.runtime.finish(flow, pin)
                return
            state.pin(pin)
        self.runtime.finish(flow, _scan_decision(flow), address=pin.text)
        if flow.response is None:
            # Connect to exactly the checked address; Host header and SNI keep the name.
            flow.request.data.host = pin.text

    async def _pin(self, config: Config, target: Host, port: int) -> Pin | Decision:
        policy = config.destinations
        if target.ip is not None:
            ips = [target.ip]
        else:
            try:
                ips = await resolve(target.name, port, policy.overrides, config.policy.destinations.resolve_timeout_ms / 1000)
            except ResolveError as exc:
                return block("resolve-failed", "destinations", str(exc))
        address, decision = decide_addresses(policy, ips)
        if address is None or not decision.allowed:
            return decision
        if decision.reason.startswith("unsafe-"):
            log.warning("UNSAFE: %s -> %s allowed by %s", target.name, address, decision.rule)
        return Pin(address, port, target.name)

    @guard
    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        refusal = self._approve(data)
        if refusal:
            log.error("yolo-cage: refused upstream connection to %s: %s", data.server.address, refusal)
            data.server.error = f"yolo-cage: {refusal}"

    def _approve(self, data: server_hooks.ServerConnectionHookData) -> str | None:
        state = self.runtime.client(data.client)
        if state.raw_denied:
            return "raw tunnel denied"
        if data.server.via is not None or data.server.address is None:
            return "no direct upstream address"
        host, port = data.server.address
        pin = state.approved.get((str(host), port))
        if pin is None:
            try:
                pin = state.pins.get((parse_host(str(host)).name, port))
            except HostError:
                return "invalid upstream host"
        if pin is None:
            return "upstream address was never approved for this client"
        _, decision = decide_address(self.runtime.require_config().destinations, pin.address)
        if not decision.allowed:
            return f"address denied ({decision.reason})"
        data.server.address = (str(pin.address), port)
        if pin.name != str(pin.address):
            data.server.sni = pin.name
        # mitmproxy would mirror the client's ALPN offers upstream: arbitrary strings, unscanned.
        offers = tuple(p for p in data.client.alpn_offers if p in HTTP_ALPNS)
        data.server.alpn_offers = offers or (b"http/1.1",)
        return None
