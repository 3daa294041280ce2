"""Request rules: the GitHub API set (REST and GraphQL) and custom rules, both verdicts per row."""

from __future__ import annotations

import json

import pytest

from addon import policy
from addon.rules import compile_rules, decide_graphql, graphql_mutations, normalise_path, segments_match

HEAD = "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"
DEFAULTS = compile_rules(policy.default_policy().rules)
API = "api.github.com"

GITHUB_TABLE = [
    # (method, path, denied rule or None)
    ("PUT", "/repos/o/r/pulls/7/merge", "github.merge-pull-request"),
    ("GET", "/repos/o/r/pulls/7/merge", None),  # "is it merged?" is a read
    ("POST", "/repos/o/r/pulls", None),  # opening a PR is the agent's job
    ("POST", "/repos/o/r/merges", "github.merge-branch"),
    ("DELETE", "/repos/o/r", "github.delete-repository"),
    ("GET", "/repos/o/r", None),
    ("DELETE", "/repos/o/r/issues/comments/1", None),
    ("DELETE", "/orgs/acme", "github.delete-organization"),
    ("DELETE", "/admin/users/bob", "github.delete-user"),
    ("GET", "/repos/o/r/actions/secrets", "github.secrets"),
    ("GET", "/repos/o/r/actions/secrets/TOKEN", "github.secrets"),
    ("PUT", "/orgs/acme/actions/secrets/TOKEN", "github.secrets"),
    ("GET", "/repos/o/r/actions/runs", None),
    ("PATCH", "/repos/o/r", "github.repository-settings"),
    ("POST", "/repos/o/r/keys", "github.repository-settings"),
    ("PUT", "/repos/o/r/collaborators/mallory", "github.collaborators"),
    ("GET", "/repos/o/r/collaborators", None),
    ("POST", "/repos/o/r/hooks", "github.webhooks"),
    ("GET", "/repos/o/r/hooks", None),
    ("PUT", "/repos/o/r/branches/main/protection", "github.branch-protection"),
    ("DELETE", "/repos/o/r/branches/feature/x/protection/required_signatures", "github.branch-protection"),
    ("GET", "/repos/o/r/branches/main/protection", None),
    ("POST", "/repos/o/r/transfer", "github.transfer-repository"),
]


@pytest.mark.parametrize(("method", "path", "rule"), GITHUB_TABLE)
def test_github_rest_defaults(method: str, path: str, rule: str | None) -> None:
    decision = DEFAULTS.decide(method, API, path)
    assert (decision.rule.removeprefix("rules:") if decision else None) == rule
    # The same request to another host is not GitHub's business.
    assert DEFAULTS.decide(method, "api.example.com", path) is None


@pytest.mark.parametrize(
    "path",
    [
        "/repos/o/r/pulls/7/%6Derge",  # percent-encoded letter
        "/repos/o/r/pulls/7/%256Derge",  # double-encoded
        "/REPOS/o/r/PULLS/7/MERGE",  # case
        "//repos/o/r/./pulls/7/merge/",  # empty and dot segments, trailing slash
        "/repos/o/r/issues/../pulls/7/merge",  # dot-dot
        "/repos\\o\\r\\pulls\\7\\merge",  # backslashes
        "/repos/o/r/pulls/7/merge?x=1",  # query
    ],
)
def test_encodings_do_not_dodge_a_rule(path: str) -> None:
    decision = DEFAULTS.decide("put", API, path)
    assert decision is not None and decision.rule == "rules:github.merge-pull-request"


def test_disabling_the_github_defaults_is_unsafe_and_effective() -> None:
    off = compile_rules(policy.parse(HEAD + "rules: {unsafe_disable_github_defaults: true}\n").rules)
    assert off.decide("DELETE", API, "/repos/o/r") is None
    assert off.graphql_gate(API, "/graphql") is None


def test_github_enterprise_hosts_get_the_set_under_api_v3() -> None:
    rules = compile_rules(policy.parse(HEAD + "rules: {github_enterprise_hosts: [ghe.corp.example]}\n").rules)
    assert rules.decide("DELETE", "ghe.corp.example", "/api/v3/repos/o/r") is not None
    assert rules.decide("DELETE", "ghe.corp.example", "/repos/o/r") is None
    assert rules.graphql_gate("ghe.corp.example", "/api/graphql") is not None


def test_custom_rules_match_methods_hosts_and_globs() -> None:
    text = HEAD + (
        "rules:\n  deny:\n"
        "    - {id: no-publish, hosts: [npm-registry.example], methods: [PUT], paths: ['/**'], detail: publishing}\n"
        "    - {id: no-admin, hosts: [app.example], paths: ['/admin/*/delete']}\n"
    )
    rules = compile_rules(policy.parse(text).rules)
    assert rules.decide("PUT", "npm-registry.example", "/left-pad").rule == "rules:no-publish"
    assert rules.decide("GET", "npm-registry.example", "/left-pad") is None
    assert rules.decide("POST", "eu.app.example", "/admin/42/delete").rule == "rules:no-admin"
    assert rules.decide("POST", "app.example", "/admin/42/43/delete") is None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/a/*", "/a/b", True),
        ("/a/*", "/a", False),
        ("/a/*", "/a/b/c", False),
        ("/a/**", "/a", True),
        ("/a/**/z", "/a/b/c/z", True),
        ("/a/**/z/**", "/a/z", True),
        ("/**", "/", True),
    ],
)
def test_segment_globs(pattern: str, path: str, expected: bool) -> None:
    assert segments_match([s for s in pattern.split("/") if s], normalise_path(path)) is expected


def test_glob_matching_stays_polynomial_on_hostile_paths() -> None:
    path = "/repos/o/r/branches/" + "protection/" * 5000 + "x"
    decision = DEFAULTS.decide("GET", API, path)  # returns quickly; GET is not denied
    assert decision is None


# --- GraphQL ------------------------------------------------------------------------

GATE = DEFAULTS.graphql_gate(API, "/graphql")


@pytest.mark.parametrize(
    ("query", "denied"),
    [
        ("mutation { mergePullRequest(input: {pullRequestId: \"x\"}) { clientMutationId } }", True),
        ("mutation M { m1: enablePullRequestAutoMerge(input: {}) { clientMutationId } }", True),
        ("mutation {\n  # mergePullRequest in a comment\n  addComment(input: {}) { clientMutationId }\n}", False),
        ("mutation { addComment(input: {body: \"please mergePullRequest\"}) { clientMutationId } }", False),
        ("query { repository(owner: \"o\", name: \"r\") { mergePullRequest: id } }", False),
        ("mutation { deleteRef(input: {refId: \"x\"}) { clientMutationId } }", True),
    ],
)
def test_graphql_mutations(query: str, denied: bool) -> None:
    assert GATE is not None
    body = json.dumps({"query": query}).encode()
    assert (decide_graphql(GATE, body, "") is not None) is denied


def test_graphql_batches_query_strings_and_unreadable_bodies() -> None:
    assert GATE is not None
    batch = json.dumps([{"query": "query { viewer { login } }"}, {"query": "mutation { mergeBranch(input: {}) { x } }"}])
    assert decide_graphql(GATE, batch.encode(), "") is not None
    assert decide_graphql(GATE, b"", "query=mutation%7BmergeBranch%7D") is not None
    assert decide_graphql(GATE, b"", "query=%7Bviewer%7Blogin%7D%7D") is None
    unreadable = decide_graphql(GATE, b"\x00not json", "")
    assert unreadable is not None and "cannot be checked" in unreadable.detail
    assert graphql_mutations('mutation { a(x: """ mergeBranch \\""" deleteRef """) }') == {"mutation", "a", "x"}


def test_only_listed_methods_pass() -> None:
    assert DEFAULTS.decide("GET", "example.com", "/") is None
    refused = DEFAULTS.decide("GHP1234SECRETISH", "example.com", "/")
    assert refused is not None and refused.reason == "method-not-allowed"
    assert DEFAULTS.decide("TRACE", "example.com", "/").reason == "method-not-allowed"
    dav = compile_rules(policy.parse(HEAD + "rules: {methods: [GET, PROPFIND]}\n").rules)
    assert dav.decide("PROPFIND", "example.com", "/") is None
    assert dav.decide("POST", "example.com", "/").reason == "method-not-allowed"
