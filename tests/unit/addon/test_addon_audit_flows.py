"""What the audit log and the WebSocket layer get from whole flows: redacted host names, aggregated
healthchecks, a blocked WebSocket closed. Scanner doubles (taddons, tflow; no sockets)."""

from __future__ import annotations

import json

import pytest
from addon_harness import new_client, refusal, request, run
from mitmproxy.test import tflow

from addon.audit import REDACTED, Repeats
from addon.scanning import Finding, ScanResult

HEX_HOST = "6768705f4d7a51384c6d4e32.70523473543677573878.m1.exfil.attacker.test"


def host_finding(location: str, method: str = "CONNECT"):
    """A scanner that finds a secret at ``location`` in the request with ``method`` only."""
    hit = ScanResult("findings", (Finding("github-token", "pattern", location, "hm:9"),))
    return lambda call: hit if call["method"] == method else ScanResult("clean")


# --- a host name that carried a finding is never written ---------------------------------------------------


@pytest.mark.parametrize("location", ["url:host", "header:host"])
def test_a_connect_target_carrying_a_finding_is_redacted(cage, location: str) -> None:
    async def main():
        c = cage().configure()
        c.scanner.answer = host_finding(location)
        return c, await c.connect(HEX_HOST)

    c, flow = run(main())
    assert refusal(flow)["reason"] == "secret-detected"
    [line] = c.audit()
    assert (line["kind"], line["host"]) == ("connect", REDACTED)
    assert "6768705f" not in json.dumps(c.audit())


def test_a_host_header_carrying_a_finding_is_redacted_in_report_mode_too(cage) -> None:
    async def main():
        c = cage().configure()
        c.scanner.answer = host_finding("header:host", "GET")
        return c, await c.send(request("llm.example", path="/v1/x"))

    c, flow = run(main())
    assert flow.response is None  # report mode: allowed, recorded
    line = c.audit()[-1]
    assert (line["decision"], line["host"], line["path"]) == ("report", REDACTED, "/v1/x")


def test_the_same_names_without_a_host_finding_are_written_as_they_are(cage) -> None:
    """The controls: no finding, or a finding elsewhere, and the host is recorded as named."""
    async def main():
        c = cage().configure()
        clean = await c.connect(HEX_HOST)
        c.scanner.answer = host_finding("header:x-note")
        elsewhere = await c.connect("example.com")
        return c, clean, elsewhere

    c, clean, elsewhere = run(main())
    assert refusal(elsewhere)["reason"] == "secret-detected"
    hosts = [line["host"] for line in c.audit()]
    assert (hosts[0], hosts[-1]) == (HEX_HOST, "example.com")


# --- healthchecks: one line per client and window ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeats_write_the_first_count_the_rest_and_owe_the_remainder() -> None:
    clock = Clock()
    r = Repeats(window=300, clock=clock)
    key, other = ("10.0.0.2", "http"), ("10.0.0.3", "http")
    assert r.admit(key, {"n": 1}) == {"n": 1, "repeats": 1}
    assert [r.admit(key, {"n": i}) for i in range(2, 5)] == [None, None, None]
    assert r.admit(other, {"n": 9}) == {"n": 9, "repeats": 1}  # keys are counted apart
    clock.now += 300
    assert r.admit(key, {"n": 5}) == {"n": 5, "repeats": 4}  # itself and the three counted
    assert r.admit(key, {"n": 6}) is None and r.admit(key, {"n": 7}) is None
    assert r.flush() == [{"n": 7, "repeats": 2}] and r.flush() == []


def test_healthchecks_are_aggregated_and_everything_else_at_the_internal_host_is_not(cage) -> None:
    async def main():
        c = cage().configure()
        for _ in range(5):
            await c.send(request("yolo-cage.internal", path="/healthz", auth=None))
            connect = await c.connect("yolo-cage.internal", auth=None)
            connect.client_conn.tls = True
            await c.send(request("yolo-cage.internal", 443, scheme="https", path="/healthz", client=connect.client_conn, auth=None))
        for _ in range(3):
            await c.send(request("yolo-cage.internal", path="/admin", auth=None))  # not a healthcheck: every one
        lines = c.audit()
        c.runtime.flush_healthchecks()
        return lines, c.audit()[len(lines):]

    lines, owed = run(main())
    shape = [(line["kind"], line["scheme"], line["path"], line.get("repeats")) for line in lines]
    assert shape == [("http", "http", "/healthz", 1), ("connect", "", "", 1), ("http", "https", "/healthz", 1)] + \
        [("http", "http", "/admin", None)] * 3
    assert sorted((line["kind"], line["scheme"], line["repeats"]) for line in owed) == [
        ("connect", "", 4), ("http", "http", 4), ("http", "https", 4)]  # 5 of each in all


def test_healthchecks_from_two_agents_are_counted_apart(cage) -> None:
    async def main():
        c = cage().configure()
        for peer in ("10.0.0.2", "10.0.0.3", "10.0.0.2"):
            await c.send(request("yolo-cage.internal", path="/healthz", auth=None, client=new_client(peer=peer)))
        return c.audit()

    lines = run(main())
    assert [(line["client"].split(":")[0], line["repeats"]) for line in lines] == [("10.0.0.2", 1), ("10.0.0.3", 1)]


# --- a blocked WebSocket is closed --------------------------------------------------------------------------


class FakeHandler:
    """Stands in for mitmproxy's ConnectionHandler of a live client connection."""

    def __init__(self, server) -> None:
        self.transports = {server: object()}
        self.closed: list[object] = []

    def close_connection(self, connection, half_close: bool = False) -> None:
        self.closed.append(connection)


@pytest.mark.parametrize("blocked", [True, False])
def test_a_blocked_websocket_message_closes_the_websocket(cage, blocked: bool) -> None:
    from mitmproxy.websocket import WebSocketMessage
    from wsproto.frame_protocol import Opcode

    async def main():
        c = cage().configure()
        flow = await c.send(request(path="/ws"))
        flow.websocket = tflow.twebsocket(messages=False)
        handler = FakeHandler(flow.server_conn)
        c.ctx.master.addons.get("proxyserver").connections[flow.client_conn.id] = handler
        if blocked:
            c.scanner.answer = ScanResult("findings", (Finding("github-token", "pattern", "websocket:message", "hm:1"),))
        for content in (b"one", b"two"):
            flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, content))
            await c.hook("websocket_message", flow)
        return flow, handler

    flow, handler = run(main())
    if blocked:
        assert all(m.dropped for m in flow.websocket.messages)
        assert handler.closed == [flow.server_conn]  # once: the layer then closes the client side too
    else:  # the control: clean messages pass and the WebSocket stays open
        assert not any(m.dropped for m in flow.websocket.messages) and handler.closed == []
