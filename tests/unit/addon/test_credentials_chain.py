"""Credential bindings and the git binding through the whole addon chain (taddons, tflow; no sockets).

Every refusal has its allowed twin through the same hooks.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from addon_harness import HEAD, TOKEN, Cage, refusal, request, run
from gitrepo import ZERO, Repo, advertisement, push_body
from mitmproxy import http
from mitmproxy.test import tflow

from addon.identity import hash_token
from addon.scanning import Finding, ScanResult

GH = "yolo-cage-placeholder-github-token-" + "a1" * 12
GH_BOB = "yolo-cage-placeholder-github-token-" + "b2" * 12
AN = "yolo-cage-placeholder-anthropic-api-key-" + "c3" * 12
REAL_GH = "realGithubToken0123456789abcdefABCDEF"
REAL_AN = "realAnthropicKey9876543210zyxwvuZYXWVU"
REPO = "github.com/acme/app"
POLICY = HEAD + (
    "destinations:\n"
    "  unsafe_host_overrides: {example.com: 93.184.216.34, api.github.com: 140.82.112.6, github.com: 140.82.112.3,\n"
    "                          api.anthropic.com: 160.79.104.10, llm.example: 93.184.216.35}\n"
    "scan:\n"
    "  destinations:\n"
    "    - {hosts: [api.anthropic.com, llm.example], mode: report}\n"
)
AGENTS = {
    "alice": {"token_sha256": hash_token(TOKEN), "branch": "yolo-cage/alice", "repositories": [REPO],
              "credentials": {"github-token": GH, "anthropic-api-key": AN}},
    "bob": {"token_sha256": hash_token("bob-token"), "credentials": {"github-token": GH_BOB}},
}  # fmt: skip


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def cred_cage(tmp_path: Path):
    def make(values: dict[str, str] | None = None, policy: str = POLICY) -> Cage:
        folder = tmp_path / "credentials"
        folder.mkdir(exist_ok=True)
        for name, value in ({"github-token": REAL_GH, "anthropic-api-key": REAL_AN} if values is None else values).items():
            (folder / name).write_text(value + "\n")
        cage = Cage(tmp_path, policy=policy, agents=AGENTS)
        return cage.configure(yolo_cage_credentials=str(folder))

    return make


async def tunnel(c: Cage, host: str, *, method: str = "GET", path: str = "/", headers=(), body: bytes = b"") -> http.HTTPFlow:
    connect = await c.connect(host)
    client = connect.client_conn
    client.tls, client.sni = True, host
    flow = request(host, 443, scheme="https", method=method, path=path, headers=list(headers), body=body, client=client, auth=None)
    return await c.send(flow)


def header_sent(flow: http.HTTPFlow, name: str) -> str:
    return flow.request.headers[name]


def finding_at(location: str):
    """A scanner that finds a secret at ``location`` in every request but the CONNECT."""
    hit = ScanResult("findings", (Finding("generic-keyword-secret", "heuristic", location, "hm:1"),))
    return lambda call: hit if call["method"] != "CONNECT" else ScanResult("clean")


def early_scans(method: str, body: bytes) -> list[str]:
    """The scanner calls a refused request in a tunnel leaves: the CONNECT's, and a bodiless request's own
    (sent before the credential check; its answer is then discarded). A request with a body is never scanned."""
    return ["CONNECT"] + ([] if body else [method])


def scanned_headers(c: Cage) -> list[str]:
    return [value for call in c.scanner.calls for _, value in call["headers"]]


# --- injection --------------------------------------------------------------------------------


def test_the_placeholder_is_swapped_for_the_real_value_after_the_scan(cred_cage) -> None:
    async def main():
        c = cred_cage()
        return c, await tunnel(c, "api.github.com", path="/user", headers=[(b"Authorization", f"Bearer {GH}".encode())])

    c, flow = run(main())
    assert flow.response is None
    assert header_sent(flow, "Authorization") == f"Bearer {REAL_GH}"
    assert f"Bearer {GH}" in scanned_headers(c) and not any(REAL_GH in h for h in scanned_headers(c))
    line = c.audit()[-1]
    assert (line["decision"], line["credentials"]) == ("allow", ["github-token"])
    assert REAL_GH not in (c.audit_path.read_text()) and GH not in c.audit_path.read_text()


def test_git_basic_auth_and_the_api_key_are_swapped_the_same_way(cred_cage) -> None:
    async def main():
        c = cred_cage()
        git = await tunnel(c, "github.com", path="/acme/app.git/info/refs?service=git-upload-pack",
                           headers=[(b"Authorization", basic("x-access-token", GH).encode())])  # fmt: skip
        key = await tunnel(c, "api.anthropic.com", method="POST", path="/v1/messages", headers=[(b"x-api-key", AN.encode())], body=b"{}")
        return git, key

    git, key = run(main())
    assert header_sent(git, "Authorization") == basic("x-access-token", REAL_GH)
    assert header_sent(key, "x-api-key") == REAL_AN


def test_a_scanner_finding_on_the_placeholder_header_itself_does_not_block(cred_cage) -> None:
    async def main():
        c = cred_cage()
        c.scanner.answer = finding_at("header:authorization")
        return await tunnel(c, "api.github.com", headers=[(b"Authorization", f"token {GH}".encode())])

    flow = run(main())
    assert flow.response is None and header_sent(flow, "Authorization") == f"token {REAL_GH}"


def test_a_secret_elsewhere_in_the_request_blocks_and_nothing_is_swapped(cred_cage) -> None:
    async def main():
        c = cred_cage()
        c.scanner.answer = finding_at("body")
        return await tunnel(c, "api.github.com", method="POST", headers=[(b"Authorization", f"Bearer {GH}".encode())], body=b'{"t":"x"}')

    flow = run(main())
    assert refusal(flow)["reason"] == "secret-detected"
    assert header_sent(flow, "Authorization") == f"Bearer {GH}"


def test_a_registered_real_value_blocks_even_in_report_mode(cred_cage) -> None:
    fingerprint = ScanResult("findings", (Finding("github-token", "fingerprint", "body", "hm:3"),))
    pattern = ScanResult("findings", (Finding("anthropic-api-key", "pattern", "body", "hm:4"),))

    async def main(answer):
        c = cred_cage()
        c.scanner.answer = lambda call: answer if call["method"] != "CONNECT" else ScanResult("clean")
        return await tunnel(c, "llm.example", method="POST", body=b'{"a": "b"}')

    assert refusal(run(main(fingerprint)))["reason"] == "secret-detected"
    assert run(main(pattern)).response is None  # the control: report mode lets a pattern finding through


def test_a_missing_real_value_refuses_the_request(cred_cage) -> None:
    async def main():
        c = cred_cage(values={"anthropic-api-key": REAL_AN})
        return await tunnel(c, "api.github.com", headers=[(b"Authorization", f"Bearer {GH}".encode())])

    flow = run(main())
    assert refusal(flow)["reason"] == "credential-unavailable"
    assert header_sent(flow, "Authorization") == f"Bearer {GH}"


# --- misuse ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "headers", "body"),
    [
        ("example.com", "/", [(b"Authorization", f"Bearer {GH}".encode())], b""),
        ("api.github.com", "/", [(b"X-Api-Key", GH.encode())], b""),
        ("api.github.com", f"/search?q={GH}", [], b""),
        ("example.com", "/gists", [], b'{"files": {"a": {"content": "' + GH.encode() + b'"}}}'),
        ("api.anthropic.com", "/v1/messages", [(b"Authorization", f"Bearer {AN}".encode())], b""),
        ("api.github.com", "/user", [(b"Authorization", f"Bearer {GH_BOB}".encode())], b""),
    ],
    ids=["other-host", "other-header", "query", "body", "other-scheme", "other-agents"],
)
def test_a_placeholder_out_of_place_is_blocked_by_the_check_whatever_the_scan_says(cred_cage, host, path, headers, body) -> None:
    async def main():
        c = cred_cage()
        c.scanner.answer = finding_at("header:x-other")  # had the scan decided, the reason would be secret-detected
        return c, await tunnel(c, host, method="POST" if body else "GET", path=path, headers=headers, body=body)

    c, flow = run(main())
    got = refusal(flow)
    assert (got["status"], got["reason"]) == (403, "credential-misuse")
    assert [call["method"] for call in c.scanner.calls] == early_scans("POST" if body else "GET", body)
    line = c.audit()[-1]
    assert (line["reason"], line["findings"]) == ("credential-misuse", [])


@pytest.mark.parametrize(
    ("host", "path", "headers", "mode"),
    [
        ("api.anthropic.com", "/v1/messages", [(b"x-api-key", AN.encode())], "report"),  # the next Messages call after `env`
        ("api.github.com", "/gists", [(b"Authorization", f"Bearer {GH}".encode())], "enforce"),  # a bound host
        ("llm.example", "/v1/chat", [], "report"),  # a report-mode destination nothing is bound to
    ],
    ids=["llm-api-conversation", "bound-host", "report-mode"],
)
def test_the_agents_own_placeholder_in_a_body_to_a_trusted_place_goes_through_untouched(cred_cage, host, path, headers, mode) -> None:
    env = f"GH_TOKEN={GH}\nANTHROPIC_API_KEY={AN}\n".encode()
    body = b'{"messages": [{"role": "user", "content": "' + env.replace(b"\n", b"\\n") + b'"}]}'

    async def main():
        c = cred_cage()
        return c, await tunnel(c, host, method="POST", path=path, headers=headers, body=body)

    c, flow = run(main())
    assert flow.response is None, refusal(flow)
    assert flow.request.raw_content == body  # never swapped in a body
    line = c.audit()[-1]
    assert (line["decision"], line["scan_mode"], line["placeholders"]) == ("allow", mode, ["anthropic-api-key", "github-token"])
    assert GH not in c.audit_path.read_text() and AN not in c.audit_path.read_text()


def test_another_agents_placeholder_in_that_body_is_still_misuse(cred_cage) -> None:
    async def main():
        c = cred_cage()
        body = b'{"messages": [{"role": "user", "content": "' + GH_BOB.encode() + b'"}]}'
        return await tunnel(c, "api.anthropic.com", method="POST", path="/v1/messages", headers=[(b"x-api-key", AN.encode())], body=body)

    got = refusal(run(main()))
    assert got is not None and got["reason"] == "credential-misuse" and "bob" in got["detail"]


# --- a bound host takes its credential and no other (an attacker's own key would open its account) -----------------


ATTACKER_OAUTH = "sk-ant-oat01-" + "Attacker0wnToken" * 4
ATTACKER_GH = "ghp_" + "Attacker0wnGitHub" * 2 + "xy"


@pytest.mark.parametrize(
    ("host", "method", "path", "headers"),
    [
        ("api.anthropic.com", "POST", "/v1/files", [(b"Authorization", f"Bearer {ATTACKER_OAUTH}".encode())]),
        ("api.anthropic.com", "POST", "/v1/files", [(b"x-api-key", b"sk-ant-api03-attackersOwnKey")]),
        ("api.github.com", "POST", "/gists", [(b"Authorization", f"token {ATTACKER_GH}".encode())]),
        ("github.com", "GET", "/evil/loot.git/info/refs?service=git-upload-pack",
         [(b"Authorization", basic("x-access-token", ATTACKER_GH).encode())]),
    ],
    ids=["anthropic-oauth-bearer", "anthropic-x-api-key", "github-api", "github-git-fetch"],
)  # fmt: skip
def test_an_attackers_own_credential_on_a_bound_host_is_refused_by_the_check(cred_cage, host, method, path, headers) -> None:
    body = b"[default]\naws_access_key_id = AKIA...\n" if method == "POST" else b""

    async def main():
        c = cred_cage()
        c.scanner.answer = finding_at("header:authorization")  # had the scan decided, the reason would be secret-detected
        return c, await tunnel(c, host, method=method, path=path, headers=headers, body=body)

    c, flow = run(main())
    got = refusal(flow)
    assert got is not None and (got["status"], got["reason"]) == (403, "credential-foreign"), got
    assert [call["method"] for call in c.scanner.calls] == early_scans(method, body)
    line = c.audit()[-1]
    assert (line["decision"], line["reason"], line["findings"]) == ("block", "credential-foreign", [])
    assert not any(value.decode() in c.audit_path.read_text() for _, value in headers)


def test_the_agents_placeholder_and_no_credential_pass_there(cred_cage) -> None:
    """The controls of the test above, through the same hooks: the placeholder is swapped, no credential is no use."""
    async def main():
        c = cred_cage()
        own = await tunnel(c, "api.anthropic.com", method="POST", path="/v1/files", headers=[(b"x-api-key", AN.encode())], body=b"x")
        bare = await tunnel(c, "api.anthropic.com", method="POST", path="/v1/files", body=b"x")
        fetch = await tunnel(c, "github.com", path="/evil/loot.git/info/refs?service=git-upload-pack")
        return c, own, bare, fetch

    c, own, bare, fetch = run(main())
    assert own.response is None and header_sent(own, "x-api-key") == REAL_AN
    assert bare.response is None and "x-api-key" not in bare.request.headers and fetch.response is None
    modes = [(line["path"], line["scan_mode"], line["credentials"]) for line in c.audit() if line["kind"] == "http"]
    assert modes[:2] == [("/v1/files", "report", ["anthropic-api-key"]), ("/v1/files", "enforce", [])]


@pytest.mark.parametrize(("method", "body"), [("POST", b"aws"), ("GET", b"")], ids=["body", "bodiless-early-scan"])
def test_report_mode_on_a_bound_host_needs_its_credential(cred_cage, method, body) -> None:
    """What the scanner finds in a request that is not going to the operator's account blocks (enforce), even on the
    LLM API. A bodiless request's scan is sent before the credential check: the mode is still taken after it."""
    found = ScanResult("findings", (Finding("aws-access-key-id", "pattern", "url:query", "hm:5"),))

    async def main(headers):
        c = cred_cage()
        c.scanner.answer = lambda call: found if call["method"] != "CONNECT" else ScanResult("clean")
        return await tunnel(c, "api.anthropic.com", method=method, path="/v1/files?k=AKIA", headers=headers, body=body)

    assert refusal(run(main([])))["reason"] == "secret-detected"
    assert run(main([(b"x-api-key", AN.encode())])).response is None  # the control: the operator's account, report mode


def test_a_placeholder_over_plain_http_is_refused_even_to_its_host(cred_cage) -> None:
    async def main():
        c = cred_cage()
        return await c.send(request("api.github.com", path="/user", headers=[(b"Authorization", f"Bearer {GH}".encode())]))

    flow = run(main())
    assert refusal(flow)["reason"] == "credential-misuse"
    assert header_sent(flow, "Authorization") == f"Bearer {GH}"


def test_the_same_requests_without_the_placeholder_pass(cred_cage) -> None:
    async def main():
        c = cred_cage()
        plain = await tunnel(c, "example.com", headers=[(b"Authorization", b"Bearer something-else")])
        body = await tunnel(c, "api.github.com", method="POST", path="/gists", body=b'{"files": {}}')
        return plain, body

    plain, body = run(main())
    assert plain.response is None and body.response is None
    assert header_sent(plain, "Authorization") == "Bearer something-else"


def test_a_gzip_body_is_checked_after_decoding(cred_cage) -> None:
    import gzip

    async def main():
        c = cred_cage()
        packed = gzip.compress(b"token=" + GH.encode())
        return await tunnel(c, "example.com", method="POST", headers=[(b"Content-Encoding", b"gzip")], body=packed)

    assert refusal(run(main()))["reason"] == "credential-misuse"


def test_a_websocket_message_with_a_placeholder_is_dropped_and_recorded_once(cred_cage) -> None:
    from mitmproxy.websocket import WebSocketMessage
    from wsproto.frame_protocol import Opcode

    async def main():
        c = cred_cage()
        flow = await c.send(request(path="/ws"))
        flow.websocket = tflow.twebsocket(messages=False)
        sent = []
        for content in (b"hello", b"key " + GH.encode(), b"after"):
            flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, content))
            await c.hook("websocket_message", flow)
            sent.append(flow.websocket.messages[-1])
        return c, sent

    c, (clean, dirty, after) = run(main())
    assert not clean.dropped and dirty.dropped and after.dropped
    lines = [(line["request_id"][-4:], line["decision"], line["reason"]) for line in c.audit() if line["kind"] == "websocket"]
    assert lines == [(".ws0", "allow", "clean"), (".ws1", "block", "credential-misuse"), (".ws2", "block", "websocket-blocked")]


# --- git -----------------------------------------------------------------------------------------


@pytest.fixture
def history(tmp_path: Path):
    repo = Repo(tmp_path / "work")
    main = repo.commit()
    repo.git("checkout", "-q", "-b", "yolo-cage/alice")
    first = repo.commit()
    second = repo.commit()
    return repo, main, first, second


async def advertise(c: Cage, refs: dict[str, str], repo: str = "acme/app") -> http.HTTPFlow:
    flow = await tunnel(c, "github.com", path=f"/{repo}.git/info/refs?service=git-receive-pack",
                        headers=[(b"Authorization", basic("x-access-token", GH).encode())])  # fmt: skip
    if flow.response is None:
        flow.response = http.Response.make(200, advertisement(refs), {"Content-Type": "application/x-git-receive-pack-advertisement"})
        await c.hook("response", flow)
    return flow


async def push(c: Cage, body: bytes, repo: str = "acme/app") -> http.HTTPFlow:
    return await tunnel(c, "github.com", method="POST", path=f"/{repo}.git/git-receive-pack", body=body,
                        headers=[(b"Authorization", basic("x-access-token", GH).encode()),
                                 (b"Content-Type", b"application/x-git-receive-pack-request")])  # fmt: skip


def test_pushing_the_own_branch_is_allowed_with_the_token(cred_cage, history) -> None:
    repo, main, first, second = history

    async def main_():
        c = cred_cage()
        await advertise(c, {"refs/heads/main": main, "refs/heads/yolo-cage/alice": first})
        body = push_body([(first, second, "refs/heads/yolo-cage/alice")], repo.pack(second, first, main))
        return c, await push(c, body)

    c, flow = run(main_())
    assert flow.response is None
    assert header_sent(flow, "Authorization") == basic("x-access-token", REAL_GH)
    assert c.audit()[-1]["credentials"] == ["github-token"]


def test_creating_the_own_branch_is_allowed(cred_cage, history) -> None:
    repo, main, _first, second = history

    async def main_():
        c = cred_cage()
        await advertise(c, {"refs/heads/main": main})
        return await push(c, push_body([(ZERO, second, "refs/heads/yolo-cage/alice")], repo.pack(second, main)))

    assert run(main_()).response is None


@pytest.mark.parametrize("case", ["main", "delete-own", "tag", "force", "mirror", "no-advertisement"])
def test_forbidden_pushes_are_refused_and_never_sent(cred_cage, history, case: str) -> None:
    repo, main, first, second = history
    adv = {"refs/heads/main": main, "refs/heads/yolo-cage/alice": first}
    repo.git("checkout", "-q", "main")
    rewritten = repo.commit("rewritten main\n")
    commands, pack = {
        "main": ([(main, rewritten, "refs/heads/main")], repo.pack(rewritten, main, first)),
        "delete-own": ([(first, ZERO, "refs/heads/yolo-cage/alice")], b""),
        "tag": ([(ZERO, second, "refs/tags/v1")], repo.pack(second, main, first)),
        # The branch rewound to a commit that does not descend from its tip: a force push.
        "force": ([(first, rewritten, "refs/heads/yolo-cage/alice")], repo.pack(rewritten, main, first)),
        "mirror": ([(first, second, "refs/heads/yolo-cage/alice"), (main, ZERO, "refs/heads/main")], repo.pack(second, first)),
        "no-advertisement": ([(first, second, "refs/heads/yolo-cage/alice")], repo.pack(second, first)),
    }[case]

    async def main_():
        c = cred_cage()
        if case != "no-advertisement":
            await advertise(c, adv)
        return c, await push(c, push_body(commands, pack))

    c, flow = run(main_())
    got = refusal(flow)
    assert (got["status"], got["reason"]) == (403, "git-push-denied"), got
    assert header_sent(flow, "Authorization") == basic("x-access-token", GH)  # the token never went in
    assert c.scanner.calls[-1]["method"] == "CONNECT"  # refused before the scan: nothing went out


def test_pushing_to_another_repository_is_refused_at_its_first_request(cred_cage) -> None:
    async def main():
        c = cred_cage()
        return c, await advertise(c, {}, repo="acme/other")

    _, flow = run(main())
    got = refusal(flow)
    assert (got["reason"], got["rule"]) == ("git-push-denied", "git:repository")


def test_an_attackers_own_token_cannot_push_to_the_attackers_repository(cred_cage, history) -> None:
    """Both requests of a push, under the attacker's token: refused and never sent (the git binding decides first;
    the foreign credential would refuse them too; only the bodiless ref advertisement's scan was sent, before the
    checks, and its answer discarded). The control: the agent's own push goes through."""
    repo, main, first, second = history
    attacker = [(b"Authorization", basic("x-access-token", ATTACKER_GH).encode())]

    async def main_():
        c = cred_cage()
        refs = await tunnel(c, "github.com", path="/evil/loot.git/info/refs?service=git-receive-pack", headers=attacker)
        body = push_body([(ZERO, second, "refs/heads/main")], repo.pack(second, main, first))
        pushed = await tunnel(c, "github.com", method="POST", path="/evil/loot.git/git-receive-pack", body=body,
                              headers=[*attacker, (b"Content-Type", b"application/x-git-receive-pack-request")])  # fmt: skip
        await advertise(c, {"refs/heads/yolo-cage/alice": first})
        own = await push(c, push_body([(first, second, "refs/heads/yolo-cage/alice")], repo.pack(second, first)))
        return c, refs, pushed, own

    c, refs, pushed, own = run(main_())
    assert refusal(refs)["reason"] == refusal(pushed)["reason"] == "git-push-denied"
    assert own.response is None and header_sent(own, "Authorization") == basic("x-access-token", REAL_GH)
    assert [call["method"] for call in c.scanner.calls if "/evil/" in call["url"]] == ["GET"]  # not the push's body


def test_fetching_another_repository_works_but_never_with_the_token(cred_cage) -> None:
    async def main():
        c = cred_cage()
        anonymous = await tunnel(c, "github.com", path="/acme/other.git/info/refs?service=git-upload-pack")
        with_token = await tunnel(c, "github.com", path="/acme/other.git/info/refs?service=git-upload-pack",
                                  headers=[(b"Authorization", basic("x-access-token", GH).encode())])  # fmt: skip
        return anonymous, with_token

    anonymous, with_token = run(main())
    assert anonymous.response is None
    assert refusal(with_token)["reason"] == "credential-misuse"


def test_a_push_hidden_at_another_path_is_judged_like_any_push(cred_cage, history) -> None:
    repo, _main, first, second = history

    async def main_():
        c = cred_cage()
        body = push_body([(first, second, "refs/heads/yolo-cage/alice")], repo.pack(second, first))
        return await tunnel(
            c, "example.com", method="POST", path="/upload", body=body, headers=[(b"Content-Type", b"application/octet-stream")]
        )

    got = refusal(run(main_()))
    assert (got["reason"], got["rule"]) == ("git-push-denied", "git:repository")


def test_bob_without_a_branch_or_repository_cannot_push(cred_cage) -> None:
    async def main():
        c = cred_cage()
        connect = await c.connect("github.com", auth="Basic " + base64.b64encode(b"bob:bob-token").decode())
        client = connect.client_conn
        client.tls, client.sni = True, "github.com"
        flow = request("github.com", 443, scheme="https", path="/acme/app.git/info/refs?service=git-receive-pack", client=client, auth=None)
        return await c.send(flow)

    assert refusal(run(main()))["reason"] == "git-push-denied"


def test_a_gzip_push_hidden_at_another_path_is_judged_too(cred_cage, history) -> None:
    import gzip

    repo, _main, first, second = history

    async def main_():
        c = cred_cage()
        body = gzip.compress(push_body([(first, second, "refs/heads/yolo-cage/alice")], repo.pack(second, first)))
        return await tunnel(c, "example.com", method="POST", path="/upload", body=body, headers=[(b"Content-Encoding", b"gzip")])

    assert refusal(run(main_()))["reason"] == "git-push-denied"


def test_a_push_over_the_scan_limit_is_left_to_the_scan_which_refuses_it(cred_cage, history) -> None:
    repo, main, first, second = history
    policy = POLICY + "  max_body_bytes: 100\n"

    async def main_():
        c = cred_cage(policy=policy)
        await advertise(c, {"refs/heads/main": main, "refs/heads/yolo-cage/alice": first})
        return await push(c, push_body([(first, second, "refs/heads/yolo-cage/alice")], repo.pack(second, first)))

    got = refusal(run(main_()))
    assert got["reason"] == "body-too-large"
