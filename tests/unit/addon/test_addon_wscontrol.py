"""WebSocket control frames: the client's ping/pong/close payloads never reach the server as sent."""

from __future__ import annotations

import wsproto.events
from addon_harness import run
from mitmproxy.proxy.layers import websocket

from addon.mitm import wscontrol
from addon.mitm.chain import make_addons

SECRET = b"ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"


def test_client_ping_payloads_are_replaced_and_translated_back() -> None:
    to_server = wscontrol.sanitise(wsproto.events.Ping(payload=SECRET[:100]), to_server=True)
    assert isinstance(to_server, wsproto.events.Ping) and bytes(to_server.payload) != SECRET[:100]
    assert len(to_server.payload) == 8
    pong = wscontrol.sanitise(wsproto.events.Pong(payload=to_server.payload), to_server=False)
    assert bytes(pong.payload) == SECRET[:100]  # the client's keep-alive sees its own payload


def test_client_pongs_pass_only_when_they_echo_the_server() -> None:
    server_ping = wscontrol.sanitise(wsproto.events.Ping(payload=b"srv-1"), to_server=False)
    assert bytes(server_ping.payload) == b"srv-1"  # inbound: untouched
    echo = wscontrol.sanitise(wsproto.events.Pong(payload=b"srv-1"), to_server=True)
    assert bytes(echo.payload) == b"srv-1"
    unsolicited = wscontrol.sanitise(wsproto.events.Pong(payload=SECRET), to_server=True)
    assert bytes(unsolicited.payload) == b""
    replay = wscontrol.sanitise(wsproto.events.Pong(payload=b"srv-1"), to_server=True)
    assert bytes(replay.payload) == b""  # one echo per ping


def test_client_close_frames_lose_their_reason_and_odd_codes() -> None:
    close = wscontrol.sanitise(wsproto.events.CloseConnection(code=4321, reason=SECRET.decode()), to_server=True)
    assert (close.code, close.reason) == (1000, None)
    normal = wscontrol.sanitise(wsproto.events.CloseConnection(code=1001, reason="bye"), to_server=True)
    assert (normal.code, normal.reason) == (1001, None)
    inbound = wscontrol.sanitise(wsproto.events.CloseConnection(code=4000, reason="server says"), to_server=False)
    assert (inbound.code, inbound.reason) == (4000, "server says")


def test_messages_are_not_touched_here() -> None:
    message = wsproto.events.TextMessage(data="hello")
    assert wscontrol.sanitise(message, to_server=True) is message  # messages go through the scanner


def test_the_chain_installs_the_wrapper_on_load(cage) -> None:
    async def main():
        cage()  # loading the chain installs the wrapper
        return wscontrol.installed(), websocket.WebsocketConnection.send2

    installed, send2 = run(main())
    assert installed and send2.__module__ == "addon.mitm.wscontrol"
    assert any(isinstance(a, wscontrol.WebSocketControlFrames) for a in make_addons())
