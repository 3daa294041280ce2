"""WebSocket control frames carry data too: keep the client's out of the upstream.

mitmproxy relays pings, pongs and close frames as they are, and has no hook
for them: a client could send 125 bytes per ping (or per unsolicited pong, or
in a close reason) to the server without any scan. This addon wraps the one
method mitmproxy uses to send every WebSocket frame
(``WebsocketConnection.send2``) so that, towards the server:

- a client ping is sent with a payload the proxy chose; the server's pong is
  translated back, so the client's keep-alive still sees its own payload;
- a client pong passes only if it echoes a ping the server sent, else empty;
- a client close frame keeps a standard code (1000 / 1001, else 1000) and no reason.

Frames from the server are untouched (inbound data is not a leak).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from typing import Any

import wsproto.events
from mitmproxy import connection
from mitmproxy.proxy.layers import websocket

_MAX_PENDING = 4096
_STANDARD_CLOSE = (1000, 1001)


class _Bounded(OrderedDict[bytes, bytes]):
    def remember(self, key: bytes, value: bytes) -> None:
        self[key] = value
        while len(self) > _MAX_PENDING:
            self.popitem(last=False)


_client_pings = _Bounded()  # proxy's payload -> the client's payload
_server_pings = _Bounded()  # payloads the server pinged with (a client may echo them)
_original_send2 = websocket.WebsocketConnection.send2


def sanitise(event: wsproto.events.Event, to_server: bool) -> wsproto.events.Event:
    """The frame to send instead of ``event`` (pure apart from the two bounded tables)."""
    if isinstance(event, wsproto.events.Ping):
        payload = bytes(event.payload)
        if not to_server:
            _server_pings.remember(payload, payload)
            return event
        token = secrets.token_bytes(8)
        _client_pings.remember(token, payload)
        return wsproto.events.Ping(payload=token)
    if isinstance(event, wsproto.events.Pong):
        payload = bytes(event.payload)
        if not to_server:
            original = _client_pings.pop(payload, None)
            return event if original is None else wsproto.events.Pong(payload=original)
        return event if _server_pings.pop(payload, None) is not None else wsproto.events.Pong(payload=b"")
    if isinstance(event, wsproto.events.CloseConnection) and to_server:
        code = event.code if event.code in _STANDARD_CLOSE else 1000
        return wsproto.events.CloseConnection(code=code, reason=None)
    return event


def _send2(self: websocket.WebsocketConnection, event: wsproto.events.Event) -> Any:
    return _original_send2(self, sanitise(event, isinstance(self.conn, connection.Server)))


def installed() -> bool:
    return websocket.WebsocketConnection.send2 is _send2


class WebSocketControlFrames:
    """Installs the wrapper when the addon loads (idempotent)."""

    def load(self, loader: object) -> None:
        websocket.WebsocketConnection.send2 = _send2  # type: ignore[method-assign]
