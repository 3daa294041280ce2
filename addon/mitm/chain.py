"""The addon chain in hook order: each class skips flows an earlier one decided.

Order matters: identity before destinations (a refused credential tells
nothing about the policy), then the scan of a bodiless request is sent (it
needs the agent and the destination; the scanner works while the rules, git
and credential checks run, and a request they refuse stays refused), the
scan's verdict after those checks (a request with a body is scanned there,
once they passed), credential injection after the scan (a real value is
swapped in only once everything passed), the upstream gate last (nothing is
resolved or connected before every other check passed).

mitmproxy sees one addon, :class:`YoloCage`, which calls the parts' hooks
itself: mitmproxy's own walk over an addon's children costs a lookup per child
and a rebuild of the hook's arguments per implementing child on every event,
about 60 us of CPU per proxied request with twelve parts (measured A/B on the
live proxy, where a whole small GET costs about 1.5 ms).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import mitmproxy.addonmanager  # noqa: F401 - registers the load hook
import mitmproxy.proxy.layers  # noqa: F401 - registers the HTTP, TCP, TLS and WebSocket hooks
import mitmproxy.proxy.server_hooks  # noqa: F401 - registers server_connect and friends
from mitmproxy import hooks, http

from addon.decision import error
from addon.mitm.credentials import CredentialCheck, CredentialInjection
from addon.mitm.destinations import Destinations
from addon.mitm.git import GitBinding
from addon.mitm.identity import Identity
from addon.mitm.internal import InternalHost
from addon.mitm.rules import RequestRules
from addon.mitm.runtime import Runtime
from addon.mitm.safety import guard
from addon.mitm.scan import ContentScan, EarlyScan
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
        EarlyScan(runtime),
        RequestRules(runtime),
        GitBinding(runtime),
        CredentialCheck(runtime),
        ContentScan(runtime),
        CredentialInjection(runtime),
        Upstream(runtime),
        Unfinished(runtime),
        WebSocketControlFrames(),
    ]


class YoloCage:
    """The one addon mitmproxy registers: on each event, the parts' hooks run in chain order.

    Every public method of a part must be a mitmproxy hook: a misspelt or
    unknown one would silently never run, so it stops the proxy at startup
    instead. Each part's hooks keep their own fail-closed guard; an exception
    that escapes one still ends the event for the parts after it, as mitmproxy's
    walk over children does.
    """

    def __init__(self, parts: Sequence[object]):
        self.parts = tuple(parts)
        by_hook: dict[str, list[Callable[..., Any]]] = {}
        for part in self.parts:
            for name in dir(part):
                if name.startswith("_") or not callable(getattr(part, name)):
                    continue
                if name not in hooks.all_hooks:
                    raise TypeError(f"{type(part).__name__}.{name} is not a mitmproxy hook")
                by_hook.setdefault(name, []).append(getattr(part, name))
        for name, funcs in by_hook.items():
            setattr(self, name, _dispatcher(name, tuple(funcs)))


def _dispatcher(name: str, funcs: tuple[Callable[..., Any], ...]) -> Callable[..., Any]:
    if not any(inspect.iscoroutinefunction(f) for f in funcs):

        def run(*args: Any) -> None:
            for f in funcs:
                f(*args)

        run.__name__ = name
        return run

    async def run_async(*args: Any) -> None:
        for f in funcs:
            pending = f(*args)
            if pending is not None:
                await pending

    run_async.__name__ = name
    return run_async
