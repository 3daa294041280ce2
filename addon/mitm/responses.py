"""How a refusal looks to the agent: one template, a JSON body and a machine-readable header."""

from __future__ import annotations

import json

from mitmproxy import http

from addon.decision import Decision

BLOCK_HEADER = "X-Yolo-Cage-Block"


def refusal(decision: Decision, request_id: str) -> http.Response:
    body = {
        "blocked": True,
        "reason": decision.reason,
        "rule": decision.rule,
        "request_id": request_id,
        "detail": decision.detail,
    }
    headers = {
        "Content-Type": "application/json",
        BLOCK_HEADER: decision.reason,
        "Cache-Control": "no-store",
    }
    if decision.status == 407:
        headers["Proxy-Authenticate"] = 'Basic realm="yolo-cage"'
    return http.Response.make(decision.status, json.dumps(body).encode() + b"\n", headers)
