"""Credential bindings at the proxy: find uses and misuse early, swap in real values last.

:class:`CredentialCheck` runs before the content scan: a placeholder in the
wrong place refuses the request (URL and headers in ``requestheaders``, the
body in ``request``, WebSocket messages as they come), and the headers that
carry a credential in its own place are marked so the scan does not count
the credential itself as a finding. A credential that is not the bound one in
a bound header is refused there too (``credential-foreign``); the agent's own
placeholder in a body to a bound host or a report-mode destination is
harmless, let through and recorded. :class:`CredentialInjection` runs after
the scan passed and before the upstream gate: it swaps each placeholder for
the real value. Nothing is swapped on a request that is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http

from addon import credentials as creds
from addon.hostnames import Host
from addon.identity import Registry
from addon.mitm.destinations import TARGET
from addon.mitm.git import GIT, agent_git
from addon.mitm.runtime import AGENT, CREDENTIALS, PLACEHOLDERS, WS_PLACEHOLDERS, Config, Runtime, ScanInfo
from addon.mitm.safety import TAINTED, drop_websocket_message, guard

USES = "yolo_cage.credential_uses"
EXEMPT = "yolo_cage.scan_exempt"
CHECK = "yolo_cage.credential_check"
INJECTED = CREDENTIALS


class _Index:
    """The placeholder index of the registry in force (rebuilt when the registry is re-read)."""

    def __init__(self) -> None:
        self._registry: Registry | None = None
        self._index = creds.PlaceholderIndex({})

    def get(self, runtime: Runtime) -> tuple[creds.PlaceholderIndex, Registry | None]:
        registry = runtime.require_config().registry
        state = registry.current() if registry is not None else None
        if not isinstance(state, Registry):
            return creds.PlaceholderIndex({}), None
        if state is not self._registry:
            owners = {p: creds.Owner(a.name, b) for a in state.agents.values() for b, p in a.credentials.items()}
            self._registry, self._index = state, creds.PlaceholderIndex(owners)
        return self._index, state


class CredentialCheck:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.index = _Index()

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        config = self.runtime.require_config()
        index, registry = self.index.get(self.runtime)
        agent = flow.metadata.get(AGENT)
        own = registry.agents[agent].credentials if registry and agent in registry.agents else {}
        target: Host = flow.metadata[TARGET]
        view = creds.RequestView(
            agent=agent,
            host=target.name,
            path=flow.request.path,
            headers=[(k, v) for k, v in flow.request.headers.items(multi=True)],
            injection_allowed=self._injection_allowed(flow),
            secure=flow.request.scheme == "https",
        )
        check = creds.check_request(config.bindings, index, own, _values(config), view)
        if check.refusal is not None:
            self.runtime.finish(flow, check.refusal)
            return
        flow.metadata[CHECK] = check
        flow.metadata[USES] = check.uses
        flow.metadata[EXEMPT] = check.exempt_locations

    def _injection_allowed(self, flow: http.HTTPFlow) -> bool:
        """A git request carries a credential only to the agent's own repositories."""
        request = flow.metadata.get(GIT)
        if request is None:
            return True
        agent = agent_git(self.runtime, flow.metadata.get(AGENT))
        return agent is not None and agent.owns(request.repository)

    @guard
    def request(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        index, _ = self.index.get(self.runtime)
        if not index:
            return
        raw = flow.request.raw_content or b""
        try:
            decoded = flow.request.get_content(strict=True)
        except ValueError:
            decoded = None  # the scan refuses an undecodable body
        agent = flow.metadata.get(AGENT)
        body = creds.check_body(index, agent, raw, decoded, harmless=self._harmless(flow))
        refusal = body.refusal
        if refusal is None and flow.request.trailers:
            trailers = "\n".join(f"{k}: {v}" for k, v in flow.request.trailers.items(multi=True)).encode()
            refusal = creds.check_body(index, agent, trailers, None, "the trailers").refusal  # headers: never harmless
        if refusal is not None:
            self.runtime.finish(flow, refusal)
        elif body.tolerated:
            flow.metadata[PLACEHOLDERS] = tuple(sorted(body.tolerated))

    def _harmless(self, flow: http.HTTPFlow) -> bool:
        target: Host = flow.metadata[TARGET]
        check: creds.Check = flow.metadata.get(CHECK, creds.Check())
        return creds.body_harmless(check, self.runtime.require_config().policy.scan.mode_for(target.name))

    @guard
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        index_no = len(flow.websocket.messages) - 1
        message = flow.websocket.messages[index_no]
        if not message.from_client or flow.metadata.get(TAINTED):
            return  # a tainted WebSocket is dropped and recorded by the content scan
        index, _ = self.index.get(self.runtime)
        body = creds.check_body(index, flow.metadata.get(AGENT), message.content, None, "a WebSocket message", self._harmless(flow))
        if body.refusal is not None:
            drop_websocket_message(flow)
            self.runtime.audit_message(flow, body.refusal, index_no, len(message.content), ScanInfo(mode=""))
        elif body.tolerated:
            flow.metadata[WS_PLACEHOLDERS] = (index_no, tuple(sorted(body.tolerated)))


class CredentialInjection:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    def request(self, flow: http.HTTPFlow) -> None:
        uses: tuple[creds.Use, ...] = flow.metadata.get(USES, ())
        if self.runtime.decided(flow) or not uses:
            return
        inject = [u for u in uses if u.inject]
        headers = creds.substitute(flow.request.headers.items(multi=True), inject, _values(self.runtime.require_config()))
        if not isinstance(headers, list):
            self.runtime.finish(flow, headers)
            return
        for use in inject:
            # check_request made sure each of these headers occurs exactly once.
            name, value = next((k, v) for k, v in headers if k.lower() == use.header)
            flow.request.headers[name] = value
        flow.metadata[INJECTED] = tuple(sorted({u.binding for u in uses}))


def _values(config: Config) -> Callable[[str], str | None]:
    values = config.credential_values
    return values.get if values is not None else (lambda name: None)
