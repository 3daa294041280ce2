"""Fail closed on bugs: every hook runs inside :func:`guard`.

mitmproxy logs an exception raised by an addon hook and carries on, which
would forward the request unchecked. ``guard`` turns any exception into a
refusal of whatever the hook was deciding: the request gets a 403, the
WebSocket message is dropped, the upstream connection is not opened.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import ctx, http, tcp
from mitmproxy.proxy import server_hooks

from addon.decision import error
from addon.mitm import runtime as rt
from addon.mitm.responses import refusal

log = logging.getLogger("yolo_cage")

TAINTED = "yolo_cage.websocket_tainted"


def guard(hook: Callable[..., Any]) -> Callable[..., Any]:
    name = hook.__name__
    if inspect.iscoroutinefunction(hook):

        @functools.wraps(hook)
        async def run_async(self: Any, obj: Any) -> None:
            try:
                await hook(self, obj)
            except Exception:
                _refuse(self.runtime, name, obj)

        return run_async

    @functools.wraps(hook)
    def run(self: Any, obj: Any) -> None:
        try:
            hook(self, obj)
        except Exception:
            _refuse(self.runtime, name, obj)

    return run


def _refuse(runtime: rt.Runtime, hook: str, obj: object) -> None:
    log.exception("yolo-cage: internal error in %s; failing closed", hook)
    decision = error("internal-error", f"addon:{hook}", "the proxy hit an internal error; blocked (fails closed)")
    try:
        if isinstance(obj, http.HTTPFlow) and hook == "websocket_message":
            drop_websocket_message(obj)
        elif isinstance(obj, http.HTTPFlow):
            _refuse_flow(runtime, obj, decision)
        elif isinstance(obj, tcp.TCPFlow):
            runtime.client(obj.client_conn).raw_denied = True
        elif isinstance(obj, server_hooks.ServerConnectionHookData):
            obj.server.error = "yolo-cage: internal error, connection refused"
    except Exception:
        log.exception("yolo-cage: error while failing closed in %s", hook)
        if isinstance(obj, http.HTTPFlow) and obj.killable:
            obj.kill()


def _refuse_flow(runtime: rt.Runtime, flow: http.HTTPFlow, decision: object) -> None:
    if not runtime.decided(flow):
        runtime.finish(flow, decision)  # type: ignore[arg-type]
        return
    # Already decided (even allowed): an error afterwards still refuses the request.
    flow.metadata[rt.DECISION] = decision
    flow.response = refusal(decision, flow.id)  # type: ignore[arg-type]


def drop_websocket_message(flow: http.HTTPFlow) -> None:
    """Drop the newest message and close the WebSocket; until it is closed, every later client message is dropped too."""
    first = not flow.metadata.get(TAINTED)
    flow.metadata[TAINTED] = True
    if flow.websocket and flow.websocket.messages:
        flow.websocket.messages[-1].drop()
    if first and not close_websocket(flow):
        log.warning("yolo-cage: WebSocket %s could not be closed; its later client messages are dropped", flow.id)


def close_websocket(flow: http.HTTPFlow) -> bool:
    """Close the upstream side of a live WebSocket; False when it is not live here.

    mitmproxy 12's WebSocket layer never looks at ``flow.kill()``, and a hook
    cannot send a close frame. Closing the server connection takes the path of
    an upstream that went away: the layer sends the client a close frame
    (1000) and closes both connections. The proxyserver's ``connections`` is
    what ``inject.websocket`` uses to reach a live connection too.
    """
    server = ctx.master.addons.get("proxyserver") if hasattr(ctx, "master") else None
    handler = getattr(server, "connections", {}).get(flow.client_conn.id)
    if handler is None or flow.server_conn not in getattr(handler, "transports", {}):
        return False
    handler.close_connection(flow.server_conn)
    return True
