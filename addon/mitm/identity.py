"""Agent identity at the proxy: Proxy-Authorization checked against the registry.

At CONNECT the credential is checked once for the whole tunnel (the requests
inside carry none); plain-HTTP requests carry it on every request. The header
is removed before anything is forwarded. 407 when it is missing or wrong.
"""

from __future__ import annotations

from mitmproxy import http

from addon.decision import error
from addon.identity import authenticate
from addon.mitm.runtime import AGENT, ClientState, Runtime
from addon.mitm.safety import guard

HEADER = "Proxy-Authorization"
_NAME = HEADER.lower().encode()


def _take_credential(headers: http.Headers) -> str | None:
    """Remove every Proxy-Authorization field; their value as ``headers.get`` gives it (repeats joined by ", ").

    One pass over the raw fields: the mapping interface would scan them three times.
    """
    fields = headers.fields
    values = [v for k, v in fields if k.lower() == _NAME]
    if not values:
        return None
    headers.fields = tuple(f for f in fields if f[0].lower() != _NAME)
    return ", ".join(v.decode("utf-8", "surrogateescape") for v in values)


class Identity:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    def http_connect(self, flow: http.HTTPFlow) -> None:
        if not self.runtime.decided(flow):
            self._authenticate(flow)

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        header = _take_credential(flow.request.headers)  # never forwarded, even on refused requests
        if self.runtime.decided(flow):
            return
        state = self.runtime.client(flow.client_conn)
        if state.tunnel is not None and state.authenticated:
            flow.metadata[AGENT] = state.agent
            return
        self._authenticate(flow, header, state)

    def _authenticate(self, flow: http.HTTPFlow, header: str | None = None, state: ClientState | None = None) -> None:
        registry = self.runtime.require_config().registry
        if registry is None:
            flow.metadata[AGENT] = None
            return
        if header is None:
            header = flow.request.headers.get(HEADER)
        current = registry.current()
        if isinstance(current, str):
            self.runtime.finish(flow, error("agent-registry-unavailable", "identity", current))
            return
        if state is not None and state.proven is not None and state.proven[0] is current and state.proven[1] == header:
            # The same credential on the same kept-alive connection, checked against this very registry.
            flow.metadata[AGENT] = state.proven[2]
            return
        agent, refusal = authenticate(current, header, flow.client_conn.peername[0] if flow.client_conn.peername else "")
        if refusal is not None:
            self.runtime.finish(flow, refusal)
            return
        if state is not None and header is not None and agent is not None:
            state.proven = (current, header, agent)  # a re-read registry is a new object: checked again
        flow.metadata[AGENT] = agent
