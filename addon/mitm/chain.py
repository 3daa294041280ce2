"""The addon chain in hook order: each class skips flows an earlier one decided.

Order matters: identity before destinations (a refused credential tells
nothing about the policy), rules, git and credential checks before the scan
(no scanner call for a request already denied), credential injection after the
scan (a real value is swapped in only once everything passed), the upstream
gate last (nothing is resolved or connected before every other check passed).
"""

from __future__ import annotations

from mitmproxy import http

from addon.decision import error
from addon.mitm.credentials import CredentialCheck, CredentialInjection
from addon.mitm.destinations import Destinations
from addon.mitm.git import GitBinding
from addon.mitm.identity import Identity
from addon.mitm.internal import InternalHost
from addon.mitm.rules import RequestRules
from addon.mitm.runtime import Runtime
from addon.mitm.safety import guard
from addon.mitm.scan import ContentScan
from addon.mitm.settings import Settings
from addon.mitm.upstream import Upstream
from addon.mitm.wscontrol import WebSocketControlFrames


class Unfinished:
    """A flow that ends (client gone, protocol error) before its decision still gets an audit line."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @guard
    def error(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow) or self.runtime.config is None:
            return
        message = flow.error.msg if flow.error else "unknown"
        decision = error("aborted", "proxy", f"the request ended before a decision: {message}")
        self.runtime.finish(flow, decision, respond=False)


def make_addons() -> list[object]:
    runtime = Runtime()
    return [
        Settings(runtime),
        InternalHost(runtime),
        Identity(runtime),
        Destinations(runtime),
        RequestRules(runtime),
        GitBinding(runtime),
        CredentialCheck(runtime),
        ContentScan(runtime),
        CredentialInjection(runtime),
        Upstream(runtime),
        Unfinished(runtime),
        WebSocketControlFrames(),
    ]
