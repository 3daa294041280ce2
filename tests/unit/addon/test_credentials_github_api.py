"""The GitHub API rules that keep the branch binding whole: refs and commits are written only by git pushes."""

from __future__ import annotations

import json

import pytest

from addon import policy
from addon.rules import compile_rules, decide_graphql

RULES = compile_rules(policy.default_policy().rules)
API = "api.github.com"


@pytest.mark.parametrize(
    ("method", "path", "denied"),
    [
        ("POST", "/repos/acme/app/git/refs", True),  # create any ref
        ("PATCH", "/repos/acme/app/git/refs/heads/main", True),  # move main, force or not
        ("DELETE", "/repos/acme/app/git/refs/heads/main", True),
        ("GET", "/repos/acme/app/git/refs/heads/main", False),  # the control: reading a ref
        ("PUT", "/repos/acme/app/contents/README.md", True),  # a commit on any branch
        ("DELETE", "/repos/acme/app/contents/README.md", True),
        ("GET", "/repos/acme/app/contents/README.md", False),
        ("POST", "/repos/acme/app/releases", True),  # creates a tag
        ("GET", "/repos/acme/app/releases", False),
        ("PUT", "/repos/acme/app/pulls/3/update-branch", True),
        ("POST", "/repos/acme/app/merge-upstream", True),
        ("POST", "/repos/acme/app/pulls", False),  # opening a pull request stays the agent's job
        ("POST", "/repos/acme/app/issues/3/comments", False),
    ],
)
def test_ref_writes_through_the_rest_api_are_denied(method: str, path: str, denied: bool) -> None:
    decision = RULES.decide(method, API, path)
    assert (decision is not None) == denied, decision
    if denied:
        assert decision.reason == "request-rule" and decision.rule.startswith("rules:github.")


@pytest.mark.parametrize(
    ("query", "denied"),
    [
        ('mutation { createCommitOnBranch(input: {branch: {branchName: "main"}}) { commit { oid } } }', True),
        ('mutation { createRef(input: {name: "refs/heads/x", oid: "abc"}) { ref { id } } }', True),
        ("mutation { updatePullRequestBranch(input: {pullRequestId: 1}) { pullRequest { id } } }", True),
        ('mutation { addComment(input: {subjectId: "x", body: "y"}) { subject { id } } }', False),
        ('query { repository(owner: "acme", name: "app") { ref(qualifiedName: "main") { name } } }', False),
    ],
)
def test_ref_writes_through_graphql_are_denied(query: str, denied: bool) -> None:
    gate = RULES.graphql_gate(API, "/graphql")
    assert gate is not None
    decision = decide_graphql(gate, json.dumps({"query": query}).encode(), "")
    assert (decision is not None) == denied
