"""``yolo-cage.internal``: a host the proxy answers itself, never forwarded.

``GET /healthz`` (plain HTTP, or HTTPS through CONNECT with a certificate from
the cage CA) answers 200 once the addon is configured, so an agent's
healthcheck proves the route to the proxy and its trust in the CA. It needs no
proxy credential: the answer carries nothing and nothing leaves the proxy.
"""

from __future__ import annotations

import json

from mitmproxy import http

from addon.decision import allow
from addon.hostnames import HostError, parse_host
from addon.mitm.runtime import HEALTHZ, INTERNAL, Runtime
from addon.mitm.safety import guard

INTERNAL_HOST = "yolo-cage.internal"


def _is_internal(raw_host: str) -> bool:
    try:
        return parse_host(raw_host).name == INTERNAL_HOST
    except HostError:
        return False


def _answer(status: int, body: dict[str, object]) -> http.Response:
    return http.Response.make(status, json.dumps(body).encode() + b"\n", {"Content-Type": "application/json"})


class InternalHost:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    def http_connect(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow) or not _is_internal(flow.request.host):
            return
        state = self.runtime.client(flow.client_conn)
        if state.tunnel is not None:
            return  # nested CONNECT: refused by the destination gate
        state.internal = True
        state.tunnel = parse_host(INTERNAL_HOST)
        state.tunnel_port = flow.request.port
        state.authenticated = True
        flow.metadata[INTERNAL] = flow.metadata[HEALTHZ] = True  # agents' healthchecks open these every few seconds
        self.runtime.finish(flow, allow("internal", INTERNAL_HOST))

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        state = self.runtime.client(flow.client_conn)
        if not (state.internal or (state.tunnel is None and _is_internal(flow.request.host))):
            return
        flow.metadata[INTERNAL] = True
        response = self._response(flow.request)
        flow.metadata[HEALTHZ] = response.status_code in (200, 503)  # anything else is not a healthcheck: every line
        self.runtime.finish(flow, allow("internal", INTERNAL_HOST))
        flow.response = response

    def _response(self, request: http.Request) -> http.Response:
        if request.path.split("?", 1)[0] != "/healthz":
            return _answer(404, {"error": "not found", "paths": ["/healthz"]})
        if request.method not in ("GET", "HEAD"):
            return _answer(405, {"error": "method not allowed"})
        if self.runtime.config is None:
            return _answer(503, {"status": "starting"})
        return _answer(200, {"status": "ok", "service": "yolo-cage proxy"})
