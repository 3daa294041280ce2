"""Request rules: method + path per host (requestheaders), GraphQL mutations (request, needs the body)."""

from __future__ import annotations

from mitmproxy import http

from addon.decision import block
from addon.hostnames import Host
from addon.mitm.destinations import TARGET
from addon.mitm.runtime import Runtime
from addon.mitm.safety import guard
from addon.rules import decide_graphql


class RequestRules:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        target: Host = flow.metadata[TARGET]
        rules = self.runtime.require_config().rules
        decision = rules.decide(flow.request.method, target.name, flow.request.path)
        if decision is not None:
            self.runtime.finish(flow, decision)

    @guard
    def request(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        target: Host = flow.metadata[TARGET]
        req = flow.request
        gate = self.runtime.require_config().rules.graphql_gate(target.name, req.path)
        if gate is None:
            return
        try:
            body = req.get_content(strict=True) or b""
        except ValueError:
            self.runtime.finish(flow, block("undecodable-body", "rules:github.graphql", "the body's Content-Encoding cannot be decoded"))
            return
        query = req.path.split("?", 1)[1] if "?" in req.path else ""
        decision = decide_graphql(gate, body, query)
        if decision is not None:
            self.runtime.finish(flow, decision)
