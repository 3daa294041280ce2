"""Request rules: method + path per host, and GitHub GraphQL mutations.

Paths are normalised before matching so that encodings cannot dodge a rule:
percent-decoding (repeated), backslashes as slashes, empty and "." segments
dropped, ".." resolved, case folded. Normalising too much only denies more.

Pure: imports nothing from mitmproxy.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from addon.decision import Decision, block
from addon.hostnames import matches
from addon.policy import GITHUB_API_HOST, GITHUB_GRAPHQL_MUTATIONS, GITHUB_RULES, Rules

_NAME_START = re.compile(r"[_A-Za-z]")
_NAME = re.compile(r"[_0-9A-Za-z]*")
_MAX_DECODE = 4


@dataclass(frozen=True, slots=True)
class DenyRule:
    id: str
    hosts: tuple[str, ...]
    methods: frozenset[str]  # empty: every method
    paths: tuple[tuple[str, ...], ...]  # split, lower-cased patterns
    detail: str

    def applies(self, method: str, host: str, segments: Sequence[str]) -> bool:
        if self.methods and method not in self.methods:
            return False
        if not any(matches(host, h) for h in self.hosts):
            return False
        return any(segments_match(p, segments) for p in self.paths)


@dataclass(frozen=True, slots=True)
class GraphQLGate:
    hosts: tuple[str, ...]
    path: tuple[str, ...]
    mutations: frozenset[str]


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[DenyRule, ...]
    graphql: tuple[GraphQLGate, ...]
    methods: frozenset[str] = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

    def decide(self, method: str, host: str, path: str) -> Decision | None:
        """The first rule that denies this request, or None (rules never allow)."""
        if method.upper() not in self.methods:
            return block("method-not-allowed", "rules.methods", f"the HTTP method {method[:16]!r} is not allowed")
        segments = normalise_path(path)
        for rule in self.rules:
            if rule.applies(method.upper(), host, segments):
                return block("request-rule", f"rules:{rule.id}", f"{method.upper()} on this path is denied: {rule.detail}")
        return None

    def graphql_gate(self, host: str, path: str) -> GraphQLGate | None:
        segments = normalise_path(path)
        for gate in self.graphql:
            if any(matches(host, h) for h in gate.hosts) and segments_match(gate.path, segments):
                return gate
        return None


def compile_rules(rules: Rules) -> RuleSet:
    compiled = [_compile(r.id, r.hosts, r.methods, r.paths, r.detail) for r in rules.deny]
    gates: list[GraphQLGate] = []
    if not rules.unsafe_disable_github_defaults:
        compiled += _github(((GITHUB_API_HOST,), ""))
        gates.append(GraphQLGate((GITHUB_API_HOST,), ("graphql",), GITHUB_GRAPHQL_MUTATIONS))
        if rules.github_enterprise_hosts:
            compiled += _github((rules.github_enterprise_hosts, "/api/v3"))
            gates.append(GraphQLGate(rules.github_enterprise_hosts, ("api", "graphql"), GITHUB_GRAPHQL_MUTATIONS))
    return RuleSet(tuple(compiled), tuple(gates), frozenset(rules.methods))


def _github(where: tuple[tuple[str, ...], str]) -> list[DenyRule]:
    hosts, prefix = where
    return [
        _compile(rule_id, hosts, methods, tuple(prefix + p for p in paths), why)
        for rule_id, methods, paths, why in GITHUB_RULES
    ]


def _compile(rule_id: str, hosts: Iterable[str], methods: Iterable[str], paths: Iterable[str], detail: str) -> DenyRule:
    split = tuple(tuple(s.lower() for s in p.split("/") if s) for p in paths)
    return DenyRule(rule_id, tuple(hosts), frozenset(methods), split, detail)


def path_only(path: str) -> str:
    return path.split("?", 1)[0].split("#", 1)[0]


def normalise_path(path: str) -> tuple[str, ...]:
    """Path segments as a permissive server might see them (see module docstring).

    The rules, the git binding and the credential checks each ask for the same
    request's path: ordinary lengths are remembered (a few recent ones, bounded).
    """
    if len(path) <= _CACHED_PATH:
        return _normalise_cached(path)
    return _normalise(path)


_CACHED_PATH = 2048


@functools.lru_cache(maxsize=256)
def _normalise_cached(path: str) -> tuple[str, ...]:
    return _normalise(path)


def _normalise(path: str) -> tuple[str, ...]:
    text = path_only(path)
    for _ in range(_MAX_DECODE):
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    out: list[str] = []
    for segment in text.replace("\\", "/").split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment.casefold())
    return tuple(out)


def segments_match(pattern: Sequence[str], segments: Sequence[str]) -> bool:
    """'*' matches one segment, '**' zero or more; everything else literally.

    Dynamic programming over (pattern, segment) positions: time stays
    len(pattern) * len(segments) whatever an attacker puts in the path.
    """
    reach = [True] + [False] * len(segments)  # reach[j]: pattern so far matches segments[:j]
    for part in pattern:
        if part == "**":
            seen = False
            reach = [seen := seen or r for r in reach]
        else:
            reach = [False] + [reach[j] and part in ("*", seg) for j, seg in enumerate(segments)]
    return reach[-1]


# --- GraphQL ------------------------------------------------------------------------


def graphql_documents(body: bytes, query_string: str) -> list[str] | None:
    """GraphQL documents a request carries (JSON body, batched or not, or ?query=).

    None when the body is not JSON of the expected shape: the caller decides.
    """
    docs = parse_qs(query_string).get("query", [])
    if not body.strip():
        return docs
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    items = data if isinstance(data, list) else [data]
    for item in items:
        if not isinstance(item, dict):
            return None
        query = item.get("query")
        if query is not None and not isinstance(query, str):
            return None
        if query:
            docs.append(query)
    return docs


def graphql_names(document: str) -> set[str]:
    """Every name token of a GraphQL document; strings and comments skipped. Linear time."""
    names: set[str] = set()
    i, n = 0, len(document)
    while i < n:
        if document.startswith('"""', i):
            i = _block_string_end(document, i + 3)
        elif document[i] == '"':
            i = _string_end(document, i + 1)
        elif document[i] == "#":
            end = document.find("\n", i)
            i = n if end < 0 else end + 1
        elif _NAME_START.match(document, i):
            end = _NAME.match(document, i + 1).end()
            names.add(document[i:end])
            i = end
        else:
            i += 1
    return names


def _string_end(doc: str, i: int) -> int:
    while i < len(doc) and doc[i] not in '"\n':
        i += 2 if doc[i] == "\\" else 1
    return i + 1


def _block_string_end(doc: str, i: int) -> int:
    while (end := doc.find('"""', i)) >= 0:
        if doc[end - 1] != "\\":
            return end + 3
        i = end + 3
    return len(doc)


def graphql_mutations(document: str) -> set[str]:
    """Names used in a document that declares a mutation; empty for queries."""
    names = graphql_names(document)
    return names if "mutation" in names else set()


def decide_graphql(gate: GraphQLGate, body: bytes, query_string: str) -> Decision | None:
    docs = graphql_documents(body, query_string)
    if docs is None:
        return block(
            "request-rule",
            "rules:github.graphql",
            "a GraphQL request whose body is not a JSON query cannot be checked for denied mutations",
        )
    for doc in docs:
        denied = sorted(graphql_mutations(doc) & gate.mutations)
        if denied:
            return block("request-rule", "rules:github.graphql", f"GraphQL mutation denied: {', '.join(denied)}")
    return None
