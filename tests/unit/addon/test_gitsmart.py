"""addon.gitsmart: pkt-lines, receive-pack commands, classification, repository and push decisions."""

from __future__ import annotations

import pytest
from gitrepo import ZERO, advertisement, push_body

from addon.gitsmart import (
    FLUSH,
    RECEIVE,
    UPLOAD,
    AgentGit,
    Command,
    GitProtocolError,
    GitRequest,
    GitRules,
    canonical_repository,
    check_branch,
    check_ref_format,
    classify,
    decide_push,
    decide_request,
    looks_like_receive_pack,
    parse_advertisement,
    parse_receive_pack,
    pkt,
    read_pkt,
)

A, B, C = "a" * 40, "b" * 40, "c" * 40
AGENT = AgentGit("yolo-cage/dev", ("github.com/acme/app",))
RULES = GitRules()


# --- pkt-lines ------------------------------------------------------------------------------------


def test_pkt_lines_round_trip_and_special_packets() -> None:
    data = pkt(b"hello\n") + b"0000" + b"0001" + b"0002" + pkt(b"")
    item, pos = read_pkt(data, 0)
    assert (item, pos) == (b"hello\n", 10)
    assert [read_pkt(data, p)[0] for p in (10, 14, 18)] == [FLUSH, "delim", "end"]
    assert read_pkt(data, 22) == (b"", 26)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"00", "truncated pkt-line length"),
        (b"zz10abc", "bad pkt-line length"),
        (b"+01f", "bad pkt-line length"),
        (b" 01f", "bad pkt-line length"),
        (b"0003", "invalid pkt-line length"),
        (b"0010abc", "truncated pkt-line"),
        (b"fff1" + b"x" * 65600, "over git's limit"),
    ],
)
def test_malformed_pkt_lines_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(GitProtocolError, match=message):
        read_pkt(data, 0)


def test_the_longest_pkt_line_git_allows_is_read() -> None:
    payload = b"x" * (65520 - 4)
    assert read_pkt(pkt(payload), 0)[0] == payload


# --- receive-pack bodies ------------------------------------------------------------------------------


def test_commands_capabilities_after_nul_and_the_pack_offset() -> None:
    body = push_body([(A, B, "refs/heads/yolo-cage/dev"), (ZERO, C, "refs/heads/other")], b"PACKxyz")
    push = parse_receive_pack(body)
    assert push.commands == (Command(A, B, "refs/heads/yolo-cage/dev"), Command(ZERO, C, "refs/heads/other"))
    assert push.capabilities == {"report-status", "side-band-64k", "agent=git/2"}
    assert body[push.pack_offset :] == b"PACKxyz"
    assert push.commands[1].is_create and not push.commands[0].is_create


def test_shallow_lines_and_push_options_are_read_and_skipped() -> None:
    body = pkt(f"shallow {C}".encode()) + push_body(
        [(A, B, "refs/heads/yolo-cage/dev")], b"PACK", caps="report-status push-options", options=["ci.skip", "x=y"]
    )
    push = parse_receive_pack(body)
    assert push.shallow == (C,) and push.push_options == ("ci.skip", "x=y")
    assert push.commands == (Command(A, B, "refs/heads/yolo-cage/dev"),)
    assert body[push.pack_offset :] == b"PACK"


def test_a_probe_body_and_an_empty_body_hold_no_commands() -> None:
    # git sends "0000" alone first when a push is larger than http.postBuffer.
    assert parse_receive_pack(b"0000").commands == ()
    assert parse_receive_pack(b"").commands == ()


def test_deletes_need_no_pack_and_nothing_may_follow_them() -> None:
    assert parse_receive_pack(push_body([(A, ZERO, "refs/heads/main")])).commands[0].is_delete
    with pytest.raises(GitProtocolError, match="unexpected bytes"):
        parse_receive_pack(push_body([(A, ZERO, "refs/heads/main")], b"smuggled"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (push_body([(A, B, "refs/heads/x")]), "no packfile"),
        (push_body([(A, B, "refs/heads/x")], b"NOTAPACK"), "no packfile"),
        (pkt(f"{A} {B}".encode()) + b"0000", "not a receive-pack command"),
        (pkt(f"{A} {B[:39]} refs/heads/x".encode()) + b"0000", "not a receive-pack command"),
        (pkt(f"{A} {'g' * 40} refs/heads/x".encode()) + b"0000", "not a receive-pack command"),
        (pkt(f"{A} {B} refs/heads/a..b".encode()) + b"0000", "invalid ref name"),
        (pkt(f"{A} {B} HEAD".encode()) + b"0000", "invalid ref name"),
        (pkt(f"{A} {B} refs/heads/x".encode()), "truncated pkt-line length"),
        (pkt(f"{A} {B} refs/heads/x".encode()) + b"0001", "unexpected delim"),
        (pkt(b"shallow nothex") + b"0000", "bad shallow line"),
        (pkt(b"push-cert\0report-status") + b"0000", "signed pushes"),
        (pkt(f"{A} {B} refs/heads/x\0push-options".encode()) + b"0000" + pkt(b"o"), "truncated pkt-line length"),
    ],
)
def test_malformed_pushes_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(GitProtocolError, match=message):
        parse_receive_pack(body)


def test_too_many_commands_are_refused() -> None:
    body = b"".join(pkt(f"{A} {B} refs/heads/b{i}".encode()) for i in range(4097)) + b"0000"
    with pytest.raises(GitProtocolError, match="more than 4096"):
        parse_receive_pack(body)


def test_sha256_object_ids_are_understood() -> None:
    old, new = "1" * 64, "2" * 64
    push = parse_receive_pack(push_body([(old, new, "refs/heads/x")], b"PACK", caps="report-status object-format=sha256"))
    assert push.oid_length == 64 and push.commands[0].new == new


def test_a_receive_pack_body_is_recognised_whatever_its_path() -> None:
    assert looks_like_receive_pack(push_body([(A, B, "refs/heads/x")], b"PACK"))
    assert looks_like_receive_pack(pkt(f"shallow {A}".encode()))
    assert not looks_like_receive_pack(b'{"json": true}')
    assert not looks_like_receive_pack(pkt(b"0032want " + A.encode()))


# --- advertisements ---------------------------------------------------------------------------------


def test_advertisement_refs_are_read() -> None:
    body = advertisement({"refs/heads/main": A, "refs/heads/yolo-cage/dev": B, "refs/tags/v1": C})
    assert parse_advertisement(body) == {"refs/heads/main": A, "refs/heads/yolo-cage/dev": B, "refs/tags/v1": C}
    assert parse_advertisement(advertisement({})) == {}
    with pytest.raises(GitProtocolError):
        parse_advertisement(pkt(b"not a ref line\n"))


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["refs/heads/main", "refs/heads/yolo-cage/dev", "refs/tags/v1.0"])
def test_valid_ref_names(ref: str) -> None:
    assert check_ref_format(ref) is None


@pytest.mark.parametrize(
    "ref", ["HEAD", "refs/heads/", "refs/heads/a..b", "refs/heads/a b", "refs/heads/a:b", "refs/heads/.x", "refs/heads/x.lock",
            "refs/heads/a@{1}", "refs/heads//x", "refs/heads/x~1", "refs/heads/x\x01"],
)  # fmt: skip
def test_invalid_ref_names(ref: str) -> None:
    assert check_ref_format(ref)


def test_branch_names() -> None:
    assert check_branch("yolo-cage/dev") is None
    assert check_branch("HEAD") and check_branch("-x") and check_branch("a..b")


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://github.com/acme/app.git", "github.com/acme/app"),
        ("https://GitHub.com/Acme/App", "github.com/acme/app"),
        ("github.com/acme/app", "github.com/acme/app"),
        ("https://git.example:8443/group/sub/app.git", "git.example:8443/group/sub/app"),
        ("http://git.example/a/b.git", "git.example/a/b"),
        ("https://github.com/acme/./x/../app.git/", "github.com/acme/app"),
    ],
)
def test_canonical_repository(url: str, canonical: str) -> None:
    assert canonical_repository(url) == canonical


@pytest.mark.parametrize("url", ["ssh://github.com/a/b", "https://github.com/", "https:///a/b"])
def test_not_a_repository_url(url: str) -> None:
    with pytest.raises(ValueError):
        canonical_repository(url)


# --- classification ---------------------------------------------------------------------------------


def _classify(path: str, method: str = "GET", content_type: str = "", body: bytes = b"", host: str = "github.com") -> GitRequest | None:
    return classify(host=host, port=443, scheme="https", method=method, path=path, content_type=content_type, body_start=body)


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/acme/app.git/info/refs?service=git-receive-pack", "GET", GitRequest(RECEIVE, True, "github.com/acme/app")),
        ("/acme/app/info/refs?service=git-upload-pack", "GET", GitRequest(UPLOAD, True, "github.com/acme/app")),
        ("/acme/app.git/git-receive-pack", "POST", GitRequest(RECEIVE, False, "github.com/acme/app")),
        ("/Acme/App.git/git-upload-pack", "POST", GitRequest(UPLOAD, False, "github.com/acme/app")),
        ("/acme/%61pp.git/git-receive-pack", "POST", GitRequest(RECEIVE, False, "github.com/acme/app")),
        (
            "/acme/app.git/info/refs?service=git-upload-pack&service=git-receive-pack",
            "GET",
            GitRequest(RECEIVE, True, "github.com/acme/app"),
        ),
        ("/acme/app.git/info/refs?service=weird", "GET", GitRequest(RECEIVE, True, "github.com/acme/app")),
        ("/acme/app", "GET", None),
        ("/acme/app.git/info/refs", "GET", None),
    ],
)
def test_classify_by_path_and_service(path: str, method: str, expected: GitRequest | None) -> None:
    assert _classify(path, method) == expected


def test_classify_by_content_type_and_by_body() -> None:
    by_type = _classify("/upload", "POST", "application/x-git-receive-pack-request")
    assert by_type == GitRequest(RECEIVE, False, "github.com/upload")
    by_body = _classify("/x/y", "POST", "application/octet-stream", push_body([(A, B, "refs/heads/z")], b"PACK"))
    assert by_body == GitRequest(RECEIVE, False, "github.com/x/y")
    assert _classify("/x/y", "POST", "application/json", b'{"a": 1}') is None


# --- decisions ------------------------------------------------------------------------------------


def test_pushes_go_only_to_the_agents_own_repositories() -> None:
    own = GitRequest(RECEIVE, True, "github.com/acme/app")
    other = GitRequest(RECEIVE, False, "github.com/acme/other")
    assert decide_request(RULES, AGENT, own).allowed
    refused = decide_request(RULES, AGENT, other)
    assert (refused.reason, refused.rule) == ("git-push-denied", "git:repository")
    assert not decide_request(RULES, None, own).allowed  # no identity, no push


def test_fetches_follow_the_policy() -> None:
    elsewhere = GitRequest(UPLOAD, True, "git.example/lib/thing")
    assert decide_request(RULES, AGENT, elsewhere).reason == "git-fetch-allowed"
    strict = GitRules(fetch_repositories=("github.com/acme/*",))
    assert decide_request(strict, AGENT, GitRequest(UPLOAD, False, "github.com/acme/lib")).allowed
    refused = decide_request(strict, AGENT, elsewhere)
    assert (refused.allowed, refused.reason) == (False, "git-fetch-denied")
    none = GitRules(fetch_repositories=())
    assert decide_request(none, AGENT, GitRequest(UPLOAD, True, "github.com/acme/app")).reason == "git-own-repository"


def _push(commands, advertised=None, rules=RULES, ff=lambda old, new: None):
    body = push_body(commands, b"PACK" if any(c[1] != ZERO for c in commands) else b"")
    adv = {"refs/heads/main": A, "refs/heads/yolo-cage/dev": B} if advertised is None else advertised
    return decide_push(rules, AGENT, parse_receive_pack(body), adv, ff)


def test_the_own_branch_may_be_created_and_fast_forwarded() -> None:
    assert _push([(B, C, "refs/heads/yolo-cage/dev")]).allowed
    assert _push([(ZERO, C, "refs/heads/yolo-cage/dev")], advertised={"refs/heads/main": A}).allowed


@pytest.mark.parametrize(
    ("commands", "rule"),
    [
        ([(A, C, "refs/heads/main")], "git:branch"),
        ([(ZERO, C, "refs/heads/feature")], "git:branch"),
        ([(ZERO, C, "refs/tags/v1")], "git:tag"),
        ([(B, ZERO, "refs/heads/yolo-cage/dev")], "git:delete"),
        ([(A, ZERO, "refs/heads/main")], "git:branch"),
        ([(ZERO, C, "refs/notes/commits")], "git:ref"),
        ([(B, C, "refs/heads/yolo-cage/dev"), (A, C, "refs/heads/main")], "git:branch"),
        ([(A, C, "refs/heads/yolo-cage/dev")], "git:stale"),
        ([(ZERO, C, "refs/heads/yolo-cage/dev")], "git:stale"),
    ],
)
def test_everything_else_is_refused(commands, rule: str) -> None:
    decision = _push(commands)
    assert (decision.allowed, decision.reason, decision.rule) == (False, "git-push-denied", rule), decision.detail


def test_a_non_fast_forward_is_refused_with_the_reason() -> None:
    decision = _push([(B, C, "refs/heads/yolo-cage/dev")], ff=lambda old, new: "not an ancestor")
    assert (decision.allowed, decision.rule) == (False, "git:force")
    assert "not an ancestor" in decision.detail


def test_a_push_without_a_preceding_advertisement_is_refused() -> None:
    body = push_body([(B, C, "refs/heads/yolo-cage/dev")], b"PACK")
    decision = decide_push(RULES, AGENT, parse_receive_pack(body), None, lambda o, n: None)
    assert (decision.allowed, decision.rule) == (False, "git:advertisement")


def test_unsafe_switches_loosen_one_thing_each() -> None:
    assert _push([(ZERO, C, "refs/tags/v1")], rules=GitRules(allow_tags=True)).allowed
    assert _push([(A, C, "refs/heads/main")], rules=GitRules(allow_other_branches=True)).allowed
    assert _push([(B, ZERO, "refs/heads/yolo-cage/dev")], rules=GitRules(allow_delete=True)).allowed
    assert _push([(B, C, "refs/heads/yolo-cage/dev")], rules=GitRules(allow_force_push=True), ff=lambda o, n: "x").allowed
    assert not _push([(A, ZERO, "refs/heads/main")], rules=GitRules(allow_delete=True)).allowed  # still not its branch


def test_an_empty_command_list_is_allowed() -> None:
    assert decide_push(RULES, AGENT, parse_receive_pack(b"0000"), {}, lambda o, n: "x").allowed
