"""The whole addon chain, hook by hook, on mitmproxy's test flows: every gate, both verdicts."""

from __future__ import annotations

import base64
import json

import pytest
from addon_harness import HEAD, POLICY, new_client, proxy_auth, refusal, request, run
from mitmproxy import http
from mitmproxy.proxy import server_hooks
from mitmproxy.test import tflow

from addon.mitm.runtime import DECISION
from addon.scanning import Finding, ScanFailure, ScanResult

SECRET_FINDING = ScanResult("findings", (Finding("github-token", "pattern", "body", "hm:1"),))


# --- CONNECT ------------------------------------------------------------------------


def test_connect_to_a_blocked_site_is_refused_before_anything_else(cage) -> None:
    async def main():
        c = cage().configure()
        flow = await c.connect("www.pastebin.com")
        return c, flow

    c, flow = run(main())
    assert refusal(flow) == {
        "status": 403, "blocked": True, "reason": "blocklisted-host", "rule": "destinations.blocklist:pastebin.com",
        "request_id": flow.id, "detail": "www.pastebin.com is on the blocklist",
    }
    assert c.scanner.calls == []
    [line] = c.audit()
    assert (line["kind"], line["decision"], line["host"], line["agent"]) == ("connect", "block", "www.pastebin.com", "alice")


def test_allowed_connect_is_scanned_once_then_pinned(cage) -> None:
    async def main():
        c = cage().configure()
        return c, await c.connect("example.com")

    c, flow = run(main())
    assert flow.response is None  # mitmproxy answers 200 Connection established
    [call] = c.scanner.calls
    assert (call["method"], call["url"], call["destination"], call["agent"]) == ("CONNECT", "https://example.com/", "example.com", "alice")
    assert all(name.lower() != "proxy-authorization" for name, _ in call["headers"])
    state = c.runtime.client(flow.client_conn)
    assert str(state.pins[("example.com", 443)].address) == "93.184.216.34"
    [line] = c.audit()
    assert (line["decision"], line["address"], line["reason"]) == ("allow", "93.184.216.34", "clean")


def test_requests_inside_a_tunnel_go_to_the_pinned_address_with_their_name(cage) -> None:
    async def main():
        c = cage().configure()
        connect = await c.connect("example.com")
        client = connect.client_conn
        client.tls, client.sni = True, "example.com"
        inner = request("example.com", 443, scheme="https", method="POST", body=b'{"a": 1}', client=client, auth=None)
        await c.send(inner)
        return c, inner

    c, inner = run(main())
    assert inner.response is None
    assert inner.request.host == "93.184.216.34"  # mitmproxy connects here, resolves nothing
    assert inner.request.headers["Host"] == "example.com"  # the server still sees the name
    assert [call["method"] for call in c.scanner.calls] == ["CONNECT", "POST"]
    body_call = c.scanner.calls[1]
    assert base64.b64decode(body_call["body_b64"]) == b'{"a": 1}' and body_call["url"] == "https://example.com/p"
    assert c.audit()[-1]["agent"] == "alice"


@pytest.mark.parametrize(
    ("sni", "host_header", "reason"),
    [
        ("example.com", "example.com", None),
        ("evil.example", "example.com", "host-mismatch"),
        ("example.com", "evil.example", "host-mismatch"),
        (None, "example.com:8443", "host-mismatch"),
    ],
)
def test_tunnel_target_sni_and_host_header_must_agree(cage, sni, host_header, reason) -> None:
    async def main():
        c = cage().configure()
        connect = await c.connect("example.com")
        client = connect.client_conn
        client.tls, client.sni = True, sni
        host = host_header.split(":")[0]
        port = int(host_header.split(":")[1]) if ":" in host_header else 443
        inner = request(host, port, scheme="https", client=client, auth=None, host_header=host_header)
        await c.send(inner)
        return c, inner

    c, inner = run(main())
    got = refusal(inner)
    assert (got["reason"] if got else None) == reason
    assert len(c.scanner.calls) == (2 if reason is None else 1)  # a refused request is never scanned


def test_http2_authority_and_host_header_must_agree_too(cage) -> None:
    async def main():
        c = cage().configure()
        connect = await c.connect("example.com")
        client = connect.client_conn
        client.tls, client.sni = True, "example.com"
        flows = []
        for host_header in ("example.com", "evil.example"):
            inner = request("example.com", 443, scheme="https", client=client, auth=None, host_header=host_header)
            inner.request.http_version = "HTTP/2.0"
            inner.request.authority = "example.com"
            flows.append(await c.send(inner))
        return flows

    same, fronted = run(main())
    assert same.response is None
    assert refusal(fronted)["reason"] == "host-mismatch"


def test_two_host_headers_are_refused(cage) -> None:
    async def main():
        c = cage().configure()
        return await c.send(request("example.com", headers=[(b"Host", b"evil.example")]))

    assert refusal(run(main()))["reason"] == "host-mismatch"


def test_nested_connect_is_refused(cage) -> None:
    async def main():
        c = cage().configure()
        outer = await c.connect("example.com")
        outer.client_conn.tls = True
        return await c.connect("evil.example", client=outer.client_conn)

    assert refusal(run(main()))["reason"] == "nested-connect"


# --- plain HTTP -----------------------------------------------------------------------


def test_plain_request_is_checked_resolved_and_pinned(cage) -> None:
    async def main():
        c = cage().configure()
        ok = await c.send(request("example.com"))
        spoofed = await c.send(request("example.com", host_header="evil.example"))
        return c, ok, spoofed

    c, ok, spoofed = run(main())
    assert ok.response is None and ok.request.host == "93.184.216.34"
    assert "Proxy-Authorization" not in ok.request.headers
    assert refusal(spoofed)["reason"] == "host-mismatch"
    assert len(c.scanner.calls) == 1


@pytest.mark.parametrize(
    ("host", "port", "reason"),
    [
        ("example.com", 80, None),
        ("example.com", 22, "port-not-allowed"),
        ("127.1", 80, "ip-literal"),
        ("0x7f000001", 80, "ip-literal"),
        ("sink.test", 80, "loopback-address"),
        ("unresolvable.invalid", 80, "resolve-failed"),
    ],
)
def test_destination_reasons(cage, host, port, reason) -> None:
    async def main():
        c = cage().configure()
        return await c.send(request(host, port))

    got = refusal(run(main()))
    assert (got["reason"] if got else None) == reason


def test_private_networks_open_only_with_the_unsafe_setting(cage) -> None:
    policy = POLICY.replace("destinations:\n", "destinations:\n  unsafe_allow_private_networks: [127.0.0.0/8]\n", 1)

    async def main():
        c = cage(policy=policy).configure()
        return await c.send(request("sink.test"))

    flow = run(main())
    assert flow.response is None and flow.request.host == "127.0.0.1"


def test_metadata_addresses_stay_closed_even_with_private_networks_open(cage) -> None:
    policy = HEAD + (
        "destinations:\n"
        "  unsafe_allow_private_networks: [169.254.0.0/16, 127.0.0.0/8]\n"
        "  unsafe_host_overrides: {metadata.test: 169.254.169.254, sink.test: 127.0.0.1}\n"
    )

    async def main():
        c = cage(policy=policy).configure()
        return await c.send(request("metadata.test")), await c.send(request("sink.test"))

    metadata, control = run(main())
    assert refusal(metadata)["reason"] == "metadata-address"
    assert control.response is None


# --- identity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "status", "reason"),
    [
        ("default", None, None),
        (None, 407, "proxy-auth-required"),
        (proxy_auth("alice", "wrong"), 407, "proxy-auth-invalid"),
        (proxy_auth("mallory", "x"), 407, "proxy-auth-invalid"),
    ],
)
def test_proxy_credentials(cage, auth, status, reason) -> None:
    async def main():
        c = cage().configure()
        return c, await c.send(request(auth=auth)), await c.connect("example.com", auth=auth)

    c, plain, connect = run(main())
    for flow in (plain, connect):
        got = refusal(flow)
        assert ((got["status"], got["reason"]) if got else (None, None)) == (status, reason)
        if status:
            assert flow.response.headers["Proxy-Authenticate"] == 'Basic realm="yolo-cage"'
    assert "Proxy-Authorization" not in plain.request.headers
    assert len(c.scanner.calls) == (0 if status else 2)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ([(b"proxy-authorization", proxy_auth().encode())], None),  # any case is the same field
        ([(b"Proxy-Authorization", proxy_auth().encode()), (b"PROXY-AUTHORIZATION", proxy_auth().encode())], 407),
        ([(b"Proxy-Authorization", proxy_auth().encode()), (b"Proxy-Authorization", proxy_auth("alice", "wrong").encode())], 407),
    ],
    ids=["lower-case", "twice", "right-and-wrong"],
)
def test_every_proxy_authorization_field_is_read_and_none_goes_upstream(cage, fields, status) -> None:
    """Repeated fields are one credential joined by ", " (as mitmproxy reads them): never a valid one."""

    async def main():
        c = cage().configure()
        return await c.send(request(auth=None, headers=[(b"X-Keep", b"1"), *fields]))

    flow = run(main())
    got = refusal(flow)
    assert (got["status"] if got else None) == status
    assert [k for k, _ in flow.request.headers.fields if k.lower() == b"proxy-authorization"] == []
    assert flow.request.headers["X-Keep"] == "1"  # the other fields stay, in order


def test_a_kept_alive_connection_proves_each_request_and_a_revoked_token_stops_at_once(cage) -> None:
    """The last credential proven on a connection is remembered only for that exact header and that registry."""
    from addon.identity import hash_token

    async def main():
        c = cage().configure()
        client = new_client()
        first = await c.send(request(path="/1", client=client))
        again = await c.send(request(path="/2", client=client))
        wrong = await c.send(request(path="/3", client=client, auth=proxy_auth("alice", "wrong")))
        c.agents_path.write_text(json.dumps({"bob": {"token_sha256": hash_token("bob-token")}}))  # alice revoked
        c.runtime.require_config().registry._checked = float("-inf")  # its next look at the file is now
        revoked = await c.send(request(path="/4", client=client))
        return first, again, wrong, revoked

    first, again, wrong, revoked = run(main())
    assert first.response is None and again.response is None  # the controls
    assert refusal(wrong)["reason"] == "proxy-auth-invalid"
    assert refusal(revoked)["reason"] == "proxy-auth-invalid"


def test_agent_networks_bind_a_credential_to_its_network(cage) -> None:
    from addon.identity import hash_token

    agents = {"alice": {"token_sha256": hash_token("alice-proxy-token"), "networks": ["10.0.0.0/24"]}}

    async def main():
        c = cage(agents=agents).configure()
        inside = await c.send(request(client=new_client(peer="10.0.0.9")))
        outside = await c.send(request(client=new_client(peer="10.0.1.9")))
        return inside, outside

    inside, outside = run(main())
    assert inside.response is None
    assert (refusal(outside)["status"], refusal(outside)["reason"]) == (403, "proxy-auth-network")


def test_without_a_registry_agents_are_unknown(cage) -> None:
    async def main():
        c = cage().configure(yolo_cage_agents="")
        return c, await c.send(request(auth=None))

    c, flow = run(main())
    assert flow.response is None
    assert c.audit()[-1]["agent"] is None


def test_a_registry_that_breaks_at_run_time_refuses_everyone(cage) -> None:
    async def main():
        c = cage().configure()
        c.agents_path.write_text("{broken")
        c.runtime.require_config().registry._checked = float("-inf")  # skip the once-a-second wait
        return await c.send(request())

    assert refusal(run(main()))["reason"] == "agent-registry-unavailable"


# --- request rules --------------------------------------------------------------------------


def test_github_rules_both_verdicts(cage) -> None:
    async def main():
        c = cage().configure()
        delete = await c.send(request("api.github.com", 80, method="DELETE", path="/repos/o/r"))
        read = await c.send(request("api.github.com", 80, method="GET", path="/repos/o/r"))
        mutation = json.dumps({"query": "mutation { mergePullRequest(input: {}) { clientMutationId } }"}).encode()
        merge = await c.send(request("api.github.com", 80, method="POST", path="/graphql", body=mutation))
        comment = json.dumps({"query": "mutation { addComment(input: {}) { clientMutationId } }"}).encode()
        ok = await c.send(request("api.github.com", 80, method="POST", path="/graphql", body=comment))
        return c, delete, read, merge, ok

    c, delete, read, merge, ok = run(main())
    assert refusal(delete)["rule"] == "rules:github.delete-repository"
    assert read.response is None
    assert refusal(merge)["rule"] == "rules:github.graphql"
    assert ok.response is None
    # A bodiless request's scan is sent before the rules (the refused DELETE's answer is discarded); a request
    # with a body is scanned only once they passed (the refused merge never is).
    assert [(call["method"], call["url"]) for call in c.scanner.calls] == [
        ("DELETE", "http://api.github.com/repos/o/r"), ("GET", "http://api.github.com/repos/o/r"),
        ("POST", "http://api.github.com/graphql")]


# --- scanning ------------------------------------------------------------------------------------


def test_findings_block_and_never_reach_the_upstream(cage) -> None:
    async def main():
        c = cage().configure()
        c.scanner.answer = SECRET_FINDING
        return c, await c.send(request(method="POST", body=b"token=ghp_x"))

    c, flow = run(main())
    got = refusal(flow)
    assert (got["status"], got["reason"], got["rule"]) == (403, "secret-detected", "scan:github-token")
    assert flow.request.host == "example.com"  # never pinned: no upstream connection can be opened
    line = c.audit()[-1]
    assert line["findings"] == [{"rule": "github-token", "source": "pattern", "location": "body", "fingerprint": "hm:1"}]


def test_every_part_goes_to_the_scanner_in_one_call(cage) -> None:
    async def main():
        c = cage().configure()
        flow = request(method="POST", path="/a/b?q=1&r=2", headers=[(b"Cookie", b"s=1; t=2"), (b"X-Any", b"v")],
                       body=b"\x1f\x8bgz", )
        flow.request.headers["Content-Encoding"] = "gzip"
        flow.request.trailers = http.Headers([(b"X-Trailer", b"late")])
        await c.send(flow)
        return c

    [call] = run(main()).scanner.calls
    assert call["url"] == "http://example.com/a/b?q=1&r=2"
    names = [name for name, _ in call["headers"]]
    assert names == ["Host", "Cookie", "X-Any", "Content-Length", "Content-Encoding", "X-Trailer"]
    assert base64.b64decode(call["body_b64"]) == b"\x1f\x8bgz"  # raw: the scanner decodes


@pytest.mark.parametrize(
    ("host", "answer", "verdict", "calls"),
    [
        ("llm.example", SECRET_FINDING, "report", 1),
        ("llm.example", ScanResult("findings", (Finding("op", "fingerprint", "body", "hm:9"),)), "block", 1),
        ("quiet.example", SECRET_FINDING, "allow", 0),
        ("example.com", SECRET_FINDING, "block", 1),
    ],
)
def test_scan_modes_per_destination(cage, host, answer, verdict, calls) -> None:
    async def main():
        c = cage().configure()
        c.scanner.answer = answer
        return c, await c.send(request(host, method="POST", body=b"x"))

    c, flow = run(main())
    assert (flow.response is None) == (verdict != "block")
    assert c.audit()[-1]["decision"] == verdict
    assert len(c.scanner.calls) == calls


@pytest.mark.parametrize("reason", ["scanner-unreachable", "scanner-timeout", "scanner-status", "scanner-bad-answer"])
def test_scanner_failures_fail_closed_and_fail_open_only_when_unsafe(cage, reason) -> None:
    async def main(policy):
        c = cage(policy=policy).configure()
        c.scanner.answer = ScanFailure(reason, "test")
        return c, await c.send(request(method="POST", body=b"x"))

    c, closed = run(main(POLICY))
    got = refusal(closed)
    assert (got["reason"], c.audit()[-1]["decision"]) == (reason, "error")
    c, opened = run(main(POLICY.replace("scan:\n", "scan:\n  unsafe_fail_open: true\n")))
    assert opened.response is None
    assert c.audit()[-1]["reason"] == f"unsafe-fail-open:{reason}"


def test_bodies_over_the_limit_are_refused_without_a_scan(cage) -> None:
    async def main():
        c = cage().configure()
        announced = request(method="POST", body=b"x" * 10)
        announced.request.headers["Content-Length"] = "5000"
        await c.hook("requestheaders", announced)
        chunked = await c.send(request(method="POST", body=b"x" * 1001))
        fits = await c.send(request(method="POST", body=b"x" * 1000))
        return c, announced, chunked, fits

    c, announced, chunked, fits = run(main())
    assert refusal(announced)["reason"] == "body-too-large"
    assert refusal(chunked)["reason"] == "body-too-large"
    assert fits.response is None
    assert len(c.scanner.calls) == 1


# --- WebSocket ------------------------------------------------------------------------------------


def test_websocket_client_messages_are_scanned_and_a_hit_closes_the_channel(cage) -> None:
    from mitmproxy.websocket import WebSocketMessage
    from wsproto.frame_protocol import Opcode

    async def main():
        c = cage().configure()
        flow = await c.send(request(path="/ws"))
        assert flow.response is None
        flow.websocket = tflow.twebsocket(messages=False)

        async def message(content: bytes, from_client: bool = True) -> WebSocketMessage:
            flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, from_client, content))
            await c.hook("websocket_message", flow)
            return flow.websocket.messages[-1]

        clean = await message(b"hello")
        c.scanner.answer = SECRET_FINDING
        secret = await message(b"ghp_secret")
        c.scanner.answer = ScanResult("clean")
        after = await message(b"harmless")
        from_server = await message(b"server says hi", from_client=False)
        return c, clean, secret, after, from_server

    c, clean, secret, after, from_server = run(main())
    assert not clean.dropped and secret.dropped and after.dropped and not from_server.dropped
    assert [call["kind"] for call in c.scanner.calls] == ["http", "websocket", "websocket"]
    kinds = [(line["kind"], line["decision"], line["reason"]) for line in c.audit()]
    assert kinds[1:] == [("websocket", "allow", "clean"), ("websocket", "block", "secret-detected"), ("websocket", "block", "websocket-blocked")]


# --- raw tunnels and the upstream chokepoint -------------------------------------------------------------


def test_raw_tcp_in_a_tunnel_is_refused_at_the_upstream(cage) -> None:
    async def main(policy):
        c = cage(policy=policy).configure()
        connect = await c.connect("example.com")
        flow = tflow.ttcpflow(client_conn=connect.client_conn)
        flow.server_conn.address = ("example.com", 443)
        await c.hook("tcp_start", flow)
        data = server_hooks.ServerConnectionHookData(server=flow.server_conn, client=flow.client_conn)
        await c.hook("server_connect", data)
        return c, data

    c, data = run(main(POLICY))
    assert data.server.error and "raw tunnel denied" in data.server.error
    assert c.audit()[-1]["kind"] == "tcp" and c.audit()[-1]["decision"] == "block"
    c, data = run(main(POLICY.replace("destinations:\n", "destinations:\n  unsafe_allow_raw_tunnels: true\n", 1)))
    assert data.server.error is None and data.server.address == ("93.184.216.34", 443)


def test_server_connect_accepts_only_addresses_approved_for_that_client(cage) -> None:
    from mitmproxy import connection

    async def main():
        c = cage().configure()
        flow = await c.send(request("example.com"))
        approved = connection.Server(address=(flow.request.host, 80))
        approved.sni = flow.request.host
        other = connection.Server(address=("93.184.216.99", 80))
        foreign = connection.Server(address=(flow.request.host, 80))
        results = []
        for server, client in ((approved, flow.client_conn), (other, flow.client_conn), (foreign, new_client())):
            data = server_hooks.ServerConnectionHookData(server=server, client=client)
            await c.hook("server_connect", data)
            results.append(data.server)
        return results

    approved, other, foreign = run(main())
    assert approved.error is None and approved.sni == "example.com"  # the name, not the IP, goes into SNI
    assert approved.alpn_offers == (b"http/1.1",)  # the test client offered nothing
    assert other.error and "never approved" in other.error
    assert foreign.error and "never approved" in foreign.error


# --- yolo-cage.internal ------------------------------------------------------------------------------


def test_internal_host_answers_itself_without_credentials(cage) -> None:
    async def main():
        c = cage().configure()
        health = await c.send(request("yolo-cage.internal", path="/healthz", auth=None))
        other = await c.send(request("yolo-cage.internal", path="/admin", auth=None))
        connect = await c.connect("yolo-cage.internal", auth=None)
        connect.client_conn.tls = True
        inner = request("yolo-cage.internal", 443, scheme="https", path="/healthz", client=connect.client_conn, auth=None)
        await c.send(inner)
        return c, health, other, connect, inner

    c, health, other, connect, inner = run(main())
    assert health.response.status_code == 200 and json.loads(health.response.content)["status"] == "ok"
    assert other.response.status_code == 404
    assert connect.response is None and inner.response.status_code == 200
    assert c.scanner.calls == []


# --- fail closed on bugs --------------------------------------------------------------------------------


def test_an_exception_in_any_hook_blocks_the_request(cage, monkeypatch) -> None:
    import addon.mitm.rules as rules_gate

    def boom(*args, **kwargs):
        raise ZeroDivisionError("bug")

    async def main():
        monkeypatch.setattr(rules_gate.RequestRules, "requestheaders", rules_gate.guard(lambda self, flow: boom()))
        c = cage().configure()  # its YoloCage binds the parts' hooks when it is made
        return c, await c.send(request())

    c, flow = run(main())
    got = refusal(flow)
    assert (got["status"], got["reason"]) == (403, "internal-error")
    assert c.audit()[-1]["decision"] == "error"
    assert flow.request.data.host == "example.com"  # the upstream gate never ran: nothing pinned, nothing sent


def test_an_unwritable_audit_log_blocks_allowed_requests(cage) -> None:
    async def main():
        c = cage().configure()
        c.runtime.require_config().audit.close()  # every write now fails
        return await c.send(request())

    assert refusal(run(main()))["reason"] == "audit-unavailable"


# --- options ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("ignore_hosts", ["example.com"], "ignore_hosts"),
        ("allow_hosts", [".*"], "allow_hosts"),
        ("tcp_hosts", [".*"], "tcp_hosts"),
        ("stream_large_bodies", "1m", "stream_large_bodies"),
        ("connection_strategy", "eager", "connection_strategy"),
        ("ssl_insecure", True, "ssl_insecure"),
        ("mode", ["transparent"], "mode"),
        ("validate_inbound_headers", False, "validate_inbound_headers"),
        ("yolo_cage_scanner", "ftp://scanner", "yolo_cage_scanner"),
        ("yolo_cage_scanner", "https://scanner:8000", "not an http:// base URL"),
        ("yolo_cage_agents", "/nonexistent/agents.json", "yolo_cage_agents"),
        ("yolo_cage_policy", "/nonexistent/policy.yaml", "yolo_cage_policy"),
    ],
)
def test_options_that_would_bypass_the_checks_are_refused(cage, option, value, message) -> None:
    async def main():
        return cage().option_error(**{option: value})

    assert message in run(main())


def test_a_bad_policy_is_refused_with_every_problem(cage) -> None:
    async def main():
        return cage(policy=HEAD + "destinations: {ports: [0], colour: red}\n").option_error()

    message = run(main())
    assert "destinations.ports[0]" in message and "destinations.colour" in message


def test_decisions_are_recorded_on_the_flow(cage) -> None:
    async def main():
        c = cage().configure()
        return await c.send(request())

    flow = run(main())
    assert flow.metadata[DECISION].reason == "clean"


def test_a_request_that_dies_before_its_decision_is_still_recorded(cage) -> None:
    from mitmproxy import flow as mflow

    async def main():
        c = cage().configure()
        flow = request(method="POST", body=b"x")
        await c.hook("requestheaders", flow)
        flow.error = mflow.Error("client disconnected")
        await c.hook("error", flow)
        return c, flow

    c, flow = run(main())
    line = c.audit()[-1]
    assert (line["request_id"], line["decision"], line["reason"]) == (flow.id, "error", "aborted")
    assert flow.response is None  # nobody to answer


@pytest.mark.parametrize(
    ("upgrade", "version", "raw_allowed", "refused"),
    [
        ("foo", "", False, True),  # a server-chosen raw protocol: an unscanned tunnel
        ("websocket", "", False, True),  # not a WebSocket handshake mitmproxy would parse
        ("websocket", "13", False, False),  # a WebSocket: its messages are scanned
        ("foo", "", True, False),  # unsafe_allow_raw_tunnels
    ],
)
def test_a_101_that_is_not_a_websocket_is_refused(cage, upgrade, version, raw_allowed, refused) -> None:
    from mitmproxy.test import tutils

    policy = POLICY.replace("destinations:\n", "destinations:\n  unsafe_allow_raw_tunnels: true\n", 1) if raw_allowed else POLICY

    async def main():
        c = cage(policy=policy).configure()
        flow = request(headers=[(b"Upgrade", upgrade.encode())] + ([(b"Sec-WebSocket-Version", version.encode())] if version else []))
        await c.send(flow)
        assert flow.response is None
        flow.response = tutils.tresp(status_code=101, headers=http.Headers([(b"Upgrade", upgrade.encode())]), content=b"")
        await c.hook("responseheaders", flow)
        return c, flow

    c, flow = run(main())
    assert (flow.response.status_code == 403) is refused
    if refused:
        assert refusal(flow)["reason"] == "raw-tunnel"
        assert c.runtime.client(flow.client_conn).raw_denied
    line = c.audit()[-1]
    if upgrade == "foo" or refused:
        assert (line["kind"], line["decision"]) == ("tcp", "block" if refused else "allow")


def test_raw_tcp_messages_are_emptied_once_refused(cage) -> None:
    async def main():
        c = cage().configure()
        flow = tflow.ttcpflow()
        c.runtime.client(flow.client_conn).raw_denied = True
        await c.hook("tcp_message", flow)
        return flow

    flow = run(main())
    assert flow.messages[-1].content == b""


def test_upstream_alpn_offers_are_only_http_protocols(cage) -> None:
    from mitmproxy import connection

    async def main():
        c = cage().configure()
        client = new_client()  # ALPN offers are known once the client's TLS starts, after CONNECT
        client.alpn_offers = [b"h2", b"ghp_exfiltrated_through_alpn", b"http/1.1"]
        connect = await c.connect("example.com", client=client)
        server = connection.Server(address=("example.com", 443))
        data = server_hooks.ServerConnectionHookData(server=server, client=connect.client_conn)
        await c.hook("server_connect", data)
        return data.server

    server = run(main())
    assert server.error is None and server.alpn_offers == (b"h2", b"http/1.1")


@pytest.mark.parametrize("fail_open", [False, True])
def test_every_fail_open_use_is_logged_loudly_for_requests_and_websocket_messages(cage, caplog, fail_open: bool) -> None:
    from mitmproxy.websocket import WebSocketMessage
    from wsproto.frame_protocol import Opcode

    policy = POLICY.replace("scan:\n", "scan:\n  unsafe_fail_open: true\n") if fail_open else POLICY

    async def main():
        c = cage(policy=policy).configure()
        ws = await c.send(request(path="/ws"))  # opened while the scanner still answers
        ws.websocket = tflow.twebsocket(messages=False)
        c.scanner.answer = ScanFailure("scanner-timeout", "test")
        posts = [await c.send(request(method="POST", body=b"x")) for _ in range(2)]
        for content in (b"one", b"two"):
            ws.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, content))
            await c.hook("websocket_message", ws)
        return c, posts, ws

    caplog.set_level("WARNING", logger="yolo_cage")
    c, posts, ws = run(main())
    unsafe = [r.getMessage() for r in caplog.records if r.getMessage().startswith("UNSAFE:")]
    ws_lines = [line for line in c.audit() if line["kind"] == "websocket"]
    if fail_open:  # each use passes, and each one says so in the proxy's log, not only in the audit
        assert all(p.response is None for p in posts) and not any(m.dropped for m in ws.websocket.messages)
        assert [line["reason"] for line in ws_lines] == ["unsafe-fail-open:scanner-timeout"] * 2
        assert len(unsafe) == 4 and sum("websocket" in m for m in unsafe) == 2, unsafe
    else:  # the control: closed, and nothing unsafe to shout about
        assert [refusal(p)["reason"] for p in posts] == ["scanner-timeout"] * 2
        assert all(m.dropped for m in ws.websocket.messages)
        assert unsafe == []
