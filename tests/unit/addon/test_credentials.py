"""addon.credentials and the policy's credentials section: matching, misuse, substitution, values."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from addon import policy
from addon.credentials import (
    FOREIGN,
    MISUSE,
    UNAVAILABLE,
    Owner,
    PlaceholderIndex,
    RequestView,
    BodyCheck,
    ValueDir,
    body_harmless,
    check_body,
    check_request,
    compile_bindings,
    is_placeholder,
    new_placeholder,
    scan_mode,
    substitute,
    without_locations,
)
from addon.scanning import Finding, ScanFailure, ScanResult

HEAD = "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"
GH_ALICE = "yolo-cage-placeholder-github-token-" + "a1" * 12
GH_BOB = "yolo-cage-placeholder-github-token-" + "b2" * 12
AN_ALICE = "yolo-cage-placeholder-anthropic-api-key-" + "c3" * 12
REAL = {"github-token": "real-github-token-0123456789", "anthropic-api-key": "real-anthropic-key-9876543210"}
BINDINGS = compile_bindings(policy.default_policy().credentials)
INDEX = PlaceholderIndex({
    GH_ALICE: Owner("alice", "github-token"), GH_BOB: Owner("bob", "github-token"),
    AN_ALICE: Owner("alice", "anthropic-api-key"),
})  # fmt: skip
OWN = {"github-token": GH_ALICE, "anthropic-api-key": AN_ALICE}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def check(host: str, headers: list[tuple[str, str]], path: str = "/", agent: str = "alice", injection: bool = True, secure: bool = True):
    view = RequestView(agent, host, path, headers, injection, secure)
    return check_request(BINDINGS, INDEX, OWN, lambda name: REAL.get(name), view)


# --- placeholders ------------------------------------------------------------------------------------


def test_placeholders_are_recognisable_and_fresh() -> None:
    one, two = new_placeholder("github-token"), new_placeholder("github-token")
    assert one != two and is_placeholder(one) and one.startswith("yolo-cage-placeholder-github-token-")
    assert not is_placeholder("ghp_" + "a" * 36) and not is_placeholder(one + "0")


# --- the policy section ---------------------------------------------------------------------------------


def test_the_default_policy_offers_both_ready_made_bindings_optionally() -> None:
    bindings = {b.name: b for b in policy.default_policy().credentials.bindings}
    assert set(bindings) == {"anthropic-api-key", "github-token"}
    assert all(not b.required and b.mode == "inject" for b in bindings.values())
    assert bindings["anthropic-api-key"].agent_env == ("ANTHROPIC_API_KEY",)
    assert bindings["github-token"].source == policy.CredentialSource(env="GITHUB_TOKEN")


def test_a_preset_can_be_narrowed_and_a_custom_binding_spelled_out() -> None:
    parsed = policy.parse(
        HEAD
        + """
credentials:
  bindings:
    - {name: gh, preset: github-token, source: {file: ~/.config/gh-token}, agent_env: [GH_TOKEN]}
    - name: service
      source: {env: SERVICE_TOKEN}
      hosts: [api.service.example]
      where: [{header: Authorization, scheme: Bearer, paths: ["/v1/**"]}]
      agent_env: [SERVICE_TOKEN]
    - {name: claude, preset: claude-oauth, source: {file: creds.json, json_pointer: /claudeAiOauth/accessToken}}
"""
    )
    gh, service, claude = parsed.credentials.bindings
    assert gh.hosts == ("github.com", "api.github.com") and gh.agent_env == ("GH_TOKEN",)
    assert gh.source == policy.CredentialSource(file="~/.config/gh-token")
    assert service.mode == "inject" and service.where[0].paths == ("/v1/**",)
    assert claude.mode == "passthrough" and claude.agent_env == ()


def test_every_problem_of_the_credentials_section_is_reported_at_once() -> None:
    with pytest.raises(policy.PolicyError) as exc:
        policy.parse(
            HEAD
            + """
credentials:
  bindings:
    - {name: a, source: {env: A}, hosts: [x.example]}
    - {name: b, mode: inject, source: {env: B}, hosts: [], where: [{header: X-Key}]}
    - {name: c, preset: claude-oauth, agent_env: [TOKEN]}
    - {name: d, preset: nope}
    - {name: e, mode: inject, source: {file: f, env: E}, hosts: [x.example], where: [{header: cookie}]}
    - {name: f, mode: inject, source: {env: F, json_pointer: /x}, hosts: [x.example], where: [{header: X, scheme: Bearer, username: u}]}
"""
        )
    text = "\n".join(exc.value.problems)
    assert "bindings[0]: where required" in text
    assert "bindings[1]: hosts and where must not be empty" in text
    assert "bindings[2]: agent_env is for inject mode" in text
    assert "bindings[3].preset" in text
    assert "bindings[4].source: exactly one of env or file" in text
    assert "bindings[4].where[0].header: cookie frames or routes the request" in text
    assert "bindings[5].source: json_pointer needs file" in text
    assert "bindings[5].where[0]: username is only for scheme Basic" in text


def test_binding_names_and_agent_variables_are_unique() -> None:
    with pytest.raises(policy.PolicyError, match="binding name 'x' used twice; agent_env 'GH_TOKEN' set by two"):
        policy.parse(
            HEAD
            + """
credentials:
  bindings:
    - {name: x, preset: github-token}
    - {name: x, preset: github-token, agent_env: [GH_TOKEN]}
"""
        )


def test_git_unsafe_switches_are_loosenings() -> None:
    parsed = policy.parse(HEAD + "git: {unsafe_allow_force_push: true, unsafe_allow_tags: true}\n")
    assert policy.loosening(parsed) == ["git.unsafe_allow_tags: true", "git.unsafe_allow_force_push: true"]


# --- where a placeholder may appear -----------------------------------------------------------------------


def test_a_placeholder_in_its_own_place_is_a_use() -> None:
    result = check("api.anthropic.com", [("X-Api-Key", AN_ALICE), ("Content-Type", "application/json")])
    assert result.refusal is None
    [use] = result.uses
    assert (use.binding, use.header, use.inject) == ("anthropic-api-key", "x-api-key", True)
    assert result.exempt_locations == {"header:x-api-key"}


@pytest.mark.parametrize(
    ("host", "path", "value"),
    [
        ("github.com", "/acme/app.git/info/refs?service=git-receive-pack", basic("x-access-token", GH_ALICE)),
        ("github.com", "/acme/app/git-upload-pack", basic("x-access-token", GH_ALICE)),
        ("api.github.com", "/user", f"Bearer {GH_ALICE}"),
        ("api.github.com", "/repos/acme/app", f"token {GH_ALICE}"),
        ("api.github.com", "/user", f"bearer {GH_ALICE}"),
    ],
)
def test_the_github_token_places(host: str, path: str, value: str) -> None:
    result = check(host, [("Authorization", value)], path)
    assert result.refusal is None and [u.binding for u in result.uses] == ["github-token"]


@pytest.mark.parametrize(
    ("host", "path", "headers", "where"),
    [
        ("paste.example", "/", [("Authorization", f"Bearer {GH_ALICE}")], "the Authorization header"),
        ("api.anthropic.com", "/", [("Authorization", f"Bearer {GH_ALICE}")], "the Authorization header"),
        ("api.github.com", "/", [("X-Token", GH_ALICE)], "the X-Token header"),
        ("api.github.com", "/", [("Authorization", f"Basic {GH_ALICE}")], "the Authorization header"),
        ("api.github.com", "/", [("Authorization", f"Bearer  {GH_ALICE}")], "the Authorization header"),
        ("api.github.com", "/", [("Authorization", f"Bearer {GH_ALICE} extra")], "the Authorization header"),
        ("api.github.com", "/", [("Authorization", f"Bearer x{GH_ALICE}")], "the Authorization header"),
        ("github.com", "/acme/app/info/refs", [("Authorization", f"Bearer {GH_ALICE}")], "the Authorization header"),
        ("github.com", "/login", [("Authorization", basic("x-access-token", GH_ALICE))], "the Authorization header"),
        ("github.com", "/acme/app/git-upload-pack", [("Authorization", basic("someone", GH_ALICE))], "the Authorization header"),
        ("api.github.com", f"/search?q={GH_ALICE}", [], "the URL"),
        ("api.github.com", f"/x/{GH_ALICE}", [], "the URL"),
        ("api.github.com", "/x?q=" + GH_ALICE.replace("-", "%2d"), [], "the URL"),
        (
            "api.github.com",
            "/",
            [("Authorization", f"Bearer {GH_ALICE}"), ("Authorization", "Bearer other")],
            "one of several authorization",
        ),
        ("api.anthropic.com", "/", [("X-Api-Key", AN_ALICE), ("x-api-key", AN_ALICE)], "the x-api-key header"),
    ],
)
def test_a_placeholder_anywhere_else_is_misuse(host: str, path: str, headers, where: str) -> None:
    result = check(host, headers, path)
    assert result.refusal is not None and result.refusal.reason == MISUSE, result
    assert where in result.refusal.detail and result.refusal.rule.startswith("credentials:")


def test_another_agents_placeholder_is_misuse_even_in_the_right_place() -> None:
    result = check("api.github.com", [("Authorization", f"Bearer {GH_BOB}")])
    assert result.refusal is not None and "belongs to agent 'bob'" in result.refusal.detail


def test_no_injection_where_the_git_binding_says_not_the_agents_repository() -> None:
    value = basic("x-access-token", GH_ALICE)
    assert check("github.com", [("Authorization", value)], "/acme/app/git-upload-pack").refusal is None
    refused = check("github.com", [("Authorization", value)], "/acme/app/git-upload-pack", injection=False)
    assert refused.refusal is not None and refused.refusal.reason == MISUSE


def test_never_over_plain_http() -> None:
    refused = check("api.github.com", [("Authorization", f"Bearer {GH_ALICE}")], secure=False)
    assert refused.refusal is not None and refused.refusal.reason == MISUSE


def test_requests_without_placeholders_carry_no_uses() -> None:
    result = check("example.com", [("Authorization", "Bearer something-else"), ("X-Api-Key", "abc")])
    assert result == type(result)()


def test_a_placeholder_in_a_body_is_misuse_as_sent_and_decoded() -> None:
    assert check_body(INDEX, "alice", b'{"token": "' + GH_ALICE.encode() + b'"}', None).refusal.reason == MISUSE
    assert check_body(INDEX, "alice", b"\x1f\x8b...", b"x=" + AN_ALICE.encode()).refusal.reason == MISUSE
    assert check_body(INDEX, "alice", b"clean", b"clean") == BodyCheck()
    assert check_body(PlaceholderIndex({}), "alice", GH_ALICE.encode(), None) == BodyCheck()


def test_the_agents_own_placeholder_in_a_harmless_body_is_tolerated_and_named() -> None:
    env = f"GH_TOKEN={GH_ALICE}\nANTHROPIC_API_KEY={AN_ALICE}\nGH_TOKEN={GH_ALICE}\n".encode()
    assert check_body(INDEX, "alice", env, None, harmless=True) == BodyCheck(tolerated=frozenset({"github-token", "anthropic-api-key"}))
    # Another agent's placeholder is never harmless: this agent should not have it at all.
    other = check_body(INDEX, "alice", env + GH_BOB.encode(), None, harmless=True)
    assert other.refusal is not None and "belongs to agent 'bob'" in other.refusal.detail
    # The control: the same body where it is not harmless.
    assert check_body(INDEX, "alice", env, None, harmless=False).refusal.reason == MISUSE


@pytest.mark.parametrize(
    ("host", "mode", "harmless"),
    [
        ("api.anthropic.com", "report", True),  # its own binding's host
        ("api.anthropic.com", "enforce", True),
        ("api.github.com", "enforce", True),  # any bound host: the operator's own account there
        ("llm.example", "report", True),  # a report-mode destination nothing is bound to
        ("paste.example", "enforce", False),
        ("paste.example", "off", False),
    ],
)
def test_where_a_placeholder_in_a_body_is_harmless(host: str, mode: str, harmless: bool) -> None:
    assert body_harmless(check(host, []), mode) is harmless


# --- a bound host takes its credential and no other -----------------------------------------------------

FOREIGN_CASES = [
    ("api.anthropic.com", "/v1/files", [("x-api-key", "sk-ant-api03-attackerOwnKey0123456789")], "anthropic-api-key"),
    ("api.anthropic.com", "/v1/files", [("Authorization", "Bearer sk-ant-oat01-attackerOwnToken012345")], "anthropic-api-key"),
    ("api.anthropic.com", "/v1/files", [("X-API-KEY", "anything")], "anthropic-api-key"),
    ("api.github.com", "/gists", [("Authorization", "Bearer ghp_attackerOwnToken0123456789abcdefABCD")], "github-token"),
    ("api.github.com", "/user/repos", [("Authorization", "token ghp_attackerOwnToken0123456789abcdefABCD")], "github-token"),
    ("github.com", "/evil/loot.git/git-receive-pack", [("Authorization", basic("x-access-token", "ghp_attackerOwn0123"))], "github-token"),
    ("github.com", "/evil/loot/issues", [("Authorization", basic("evil", "password"))], "github-token"),
]


@pytest.mark.parametrize(("host", "path", "headers", "binding"), FOREIGN_CASES)
def test_another_credential_in_a_bound_place_is_foreign(host: str, path: str, headers, binding: str) -> None:
    result = check(host, headers, path)
    assert result.refusal is not None and result.refusal.reason == FOREIGN, result
    assert result.refusal.rule == f"credentials:{binding}"
    assert not any(value in result.refusal.detail for _, value in headers)  # never echoes the value


@pytest.mark.parametrize(("host", "path", "headers", "binding"), FOREIGN_CASES)
def test_the_same_value_to_an_unbound_host_and_no_value_to_the_bound_one_pass(host: str, path: str, headers, binding: str) -> None:
    """The paired controls: the same headers elsewhere, and the bound host without a credential (or with an empty one)."""
    assert check("example.com", headers, path).refusal is None
    bare = check(host, [], path)
    assert (bare.refusal, bare.uses, bare.bound_host) == (None, (), True)
    assert check(host, [(name, "") for name, _ in headers], path).refusal is None


def test_a_binding_without_a_value_or_placeholder_guards_nothing() -> None:
    """Nothing bound for that host here (no value for the proxy, no placeholder for the agent): the user's own key passes."""
    view = RequestView("alice", "api.anthropic.com", "/v1/messages", [("x-api-key", "sk-ant-api03-usersOwnKey")])
    unbound = check_request(BINDINGS, INDEX, {"github-token": GH_ALICE}, {"github-token": "real"}.get, view)
    assert (unbound.refusal, unbound.bound_host) == (None, False)
    bound = check_request(BINDINGS, INDEX, {"github-token": GH_ALICE}, REAL.get, view)  # the proxy holds the key
    assert bound.refusal is not None and bound.refusal.reason == FOREIGN


def test_a_passthrough_binding_takes_its_own_token_and_no_other() -> None:
    bindings = compile_bindings(policy.parse(HEAD + "credentials: {bindings: [{name: claude, preset: claude-oauth}]}\n").credentials)
    real = "sk-ant-oat01-" + "x" * 40
    values = {"claude": real}.get

    def on_api(value: str, header: str = "Authorization"):
        return check_request(bindings, PlaceholderIndex({}), {}, values, RequestView("alice", "api.anthropic.com", "/v1/files", [(header, value)]))

    assert on_api(f"Bearer {real}").refusal is None
    assert on_api("Bearer sk-ant-oat01-attackersOwnToken").refusal.reason == FOREIGN
    assert on_api("sk-ant-api03-attackersOwnKey", "x-api-key").refusal.reason == FOREIGN
    # Its own value out of its place is left to the scanner's fingerprint (which blocks it everywhere).
    assert on_api(real, "x-api-key").refusal is None


@pytest.mark.parametrize(
    ("mode", "headers", "expected"),
    [
        ("report", [("x-api-key", AN_ALICE)], "report"),  # the operator's account: report mode as configured
        ("report", [], "enforce"),  # a bound host without its credential: not the operator's account
        ("enforce", [("x-api-key", AN_ALICE)], "enforce"),
        ("off", [], "off"),
    ],
)
def test_report_mode_holds_only_for_the_operators_own_account(mode: str, headers, expected: str) -> None:
    assert scan_mode(mode, check("api.anthropic.com", headers)) == expected
    assert scan_mode(mode, check("llm.example", [])) == mode  # nothing bound there: as configured


def test_the_index_finds_placeholders_among_prefix_lookalikes() -> None:
    noise = b"yolo-cage-placeholder-" * 1000
    assert INDEX.find(noise) is None
    assert INDEX.find(noise + GH_BOB.encode()) == Owner("bob", "github-token")
    assert INDEX.find(GH_ALICE[:-1].encode()) is None


# --- passthrough (the weaker mode) ------------------------------------------------------------------------


def test_a_passthrough_value_in_its_place_exempts_that_header_only() -> None:
    bindings = compile_bindings(policy.parse(HEAD + "credentials: {bindings: [{name: claude, preset: claude-oauth}]}\n").credentials)
    values = {"claude": "sk-ant-oat01-" + "x" * 40}.get
    here = check_request(
        bindings,
        PlaceholderIndex({}),
        {},
        values,
        RequestView("alice", "api.anthropic.com", "/v1/messages", [("Authorization", "Bearer " + values("claude"))]),
    )
    assert [(u.binding, u.inject) for u in here.uses] == [("claude", False)] and here.exempt_locations == {"header:authorization"}
    elsewhere = check_request(
        bindings,
        PlaceholderIndex({}),
        {},
        values,
        RequestView("alice", "paste.example", "/", [("Authorization", "Bearer " + values("claude"))]),
    )
    assert elsewhere.uses == ()  # not exempt: the scanner's fingerprint finding blocks it


# --- substitution -------------------------------------------------------------------------------------


def test_substitution_swaps_only_the_used_headers() -> None:
    result = check("github.com", [("Authorization", basic("x-access-token", GH_ALICE)), ("X-Other", "keep")], "/acme/app/git-receive-pack")
    headers = substitute([("Authorization", basic("x-access-token", GH_ALICE)), ("X-Other", "keep")], result.uses, REAL.get)
    assert headers == [("Authorization", basic("x-access-token", REAL["github-token"])), ("X-Other", "keep")]
    bearer = check("api.github.com", [("Authorization", f"token {GH_ALICE}")])
    assert substitute([("Authorization", f"token {GH_ALICE}")], bearer.uses, REAL.get) == [
        ("Authorization", f"token {REAL['github-token']}")
    ]
    key = check("api.anthropic.com", [("x-api-key", AN_ALICE)])
    assert substitute([("x-api-key", AN_ALICE)], key.uses, REAL.get) == [("x-api-key", REAL["anthropic-api-key"])]


def test_a_missing_real_value_refuses_instead_of_sending_the_placeholder() -> None:
    key = check("api.anthropic.com", [("x-api-key", AN_ALICE)])
    refused = substitute([("x-api-key", AN_ALICE)], key.uses, lambda name: None)
    assert not isinstance(refused, list) and refused.reason == UNAVAILABLE


def test_findings_at_a_bound_header_are_dropped_and_only_there() -> None:
    at_header = Finding("generic-keyword-secret", "heuristic", "header:authorization", "hm:1")
    in_body = Finding("github-token", "pattern", "body", "hm:2")
    both = ScanResult("findings", (at_header, in_body))
    assert without_locations(both, frozenset({"header:authorization"})) == ScanResult("findings", (in_body,))
    assert without_locations(ScanResult("findings", (at_header,)), frozenset({"header:authorization"})).verdict == "clean"
    assert without_locations(both, frozenset()) is both
    failure = ScanFailure("scanner-timeout", "slow")
    assert without_locations(failure, frozenset({"header:authorization"})) is failure


# --- real values on disk ------------------------------------------------------------------------------------


def test_value_dir_reads_values_and_follows_changes(tmp_path: Path) -> None:
    (tmp_path / "github-token").write_text("real-value-123\n")
    (tmp_path / "bad").write_bytes(b"two words")
    (tmp_path / ".hidden").write_text("ignored")
    now = [0.0]
    values = ValueDir(str(tmp_path), clock=lambda: now[0])
    assert values.get("github-token") == "real-value-123" and values.get("bad") is None
    assert values.problems == ["bad: not a single printable ASCII token (cannot go into a header)"]
    assert "two" not in " ".join(values.problems)
    (tmp_path / "github-token").write_text("rotated-value-456")
    os.utime(tmp_path / "github-token", ns=(1, 2))
    assert values.get("github-token") == "real-value-123"  # checked at most once a second
    now[0] = 5.0
    assert values.get("github-token") == "rotated-value-456"
    assert values.names() == ["github-token"]


def test_a_missing_value_dir_has_no_values(tmp_path: Path) -> None:
    assert ValueDir(str(tmp_path / "none")).get("github-token") is None


# --- the README and the example policy ---------------------------------------------------------------------


def _readme_section(title: str) -> str:
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def test_the_readme_snippet_is_a_valid_policy_that_binds_what_it_says() -> None:
    import re

    [snippet] = re.findall(r"```yaml\n(.*?)```", _readme_section("Credentials and git"), re.DOTALL)
    parsed = policy.parse(HEAD + snippet, "README.md")
    bindings = {b.name: b for b in parsed.credentials.bindings}
    assert bindings["github-token"].source == policy.CredentialSource(file="~/.config/yolo-cage/github-token")
    assert bindings["github-token"].required and not bindings["anthropic-api-key"].required
    assert parsed.git.fetch_repositories == ("**",) and policy.loosening(parsed) == []


def test_the_readme_names_every_preset_and_git_switch() -> None:
    text = _readme_section("Credentials and git")
    assert all(f"`{name}`" in text for name in policy.PRESETS)
    assert all(f"`{name}`" in text or f"`git.{name}`" in text for name in policy.Git.model_fields if name.startswith("unsafe_"))


def test_the_example_policy_binds_nothing_it_cannot_find() -> None:
    from kit import credentials as kit_credentials

    example = Path(__file__).resolve().parents[3] / "addon" / "policy.example.yaml"
    parsed = policy.load(example)
    assert {b.name for b in parsed.credentials.bindings} >= {"anthropic-api-key", "github-token"}
    bound = kit_credentials.resolve(parsed, example.parent, {})
    assert bound.resolved == () and len(bound.skipped) == len(parsed.credentials.bindings)
