"""Agent identity: registry parsing, authentication table, reload and fail-closed states."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from addon.identity import (
    AUTH_INVALID,
    AUTH_NETWORK,
    AUTH_REQUIRED,
    Registry,
    RegistryError,
    RegistryFile,
    authenticate,
    hash_token,
    parse_registry,
)

TOKEN = "s3cret-token-alice"


def registry_text(**agents: dict) -> str:
    return json.dumps(agents)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


REGISTRY = parse_registry(
    registry_text(
        alice={"token_sha256": hash_token(TOKEN)},
        bob={"token_sha256": hash_token("bob-token"), "networks": ["172.30.1.0/24"]},
    )
)

AUTH_TABLE = [
    ("ok", basic("alice", TOKEN), "10.9.9.9", "alice", None),
    ("scheme-any-case", "bAsIc " + basic("alice", TOKEN).split()[1], "10.9.9.9", "alice", None),
    ("missing", None, "10.9.9.9", None, AUTH_REQUIRED),
    ("empty", "", "10.9.9.9", None, AUTH_REQUIRED),
    ("wrong-token", basic("alice", "guess"), "10.9.9.9", None, AUTH_INVALID),
    ("unknown-agent", basic("mallory", TOKEN), "10.9.9.9", None, AUTH_INVALID),
    ("other-agents-token", basic("alice", "bob-token"), "10.9.9.9", None, AUTH_INVALID),
    ("bearer", "Bearer " + TOKEN, "10.9.9.9", None, AUTH_INVALID),
    ("not-base64", "Basic !!!", "10.9.9.9", None, AUTH_INVALID),
    ("no-colon", "Basic " + base64.b64encode(b"alice").decode(), "10.9.9.9", None, AUTH_INVALID),
    ("network-ok", basic("bob", "bob-token"), "172.30.1.7", "bob", None),
    ("network-mapped", basic("bob", "bob-token"), "::ffff:172.30.1.7", "bob", None),
    ("network-wrong", basic("bob", "bob-token"), "172.30.2.7", None, AUTH_NETWORK),
]


@pytest.mark.parametrize(("row", "header", "client", "agent", "reason"), AUTH_TABLE, ids=[r[0] for r in AUTH_TABLE])
def test_authenticate(row: str, header: str | None, client: str, agent: str | None, reason: str | None) -> None:
    got, refusal = authenticate(REGISTRY, header, client)
    assert got == agent
    assert (refusal.reason if refusal else None) == reason
    if refusal is not None:
        assert refusal.status == (403 if reason == AUTH_NETWORK else 407)


def test_registry_problems_are_all_reported() -> None:
    text = registry_text(
        Alice={"token_sha256": hash_token("x")},
        bob={"token_sha256": "abc", "networks": ["10.0.0.1/8", 5], "colour": "red"},
        carol="nope",
    )
    with pytest.raises(RegistryError) as info:
        parse_registry(text)
    joined = "\n".join(info.value.problems)
    assert len(info.value.problems) == 6, joined
    for needle in ("'Alice'", "bob.colour: unknown key", "bob.token_sha256", "bob.networks[0]", "bob.networks[1]", "carol:"):
        assert needle in joined
    with pytest.raises(RegistryError, match="not valid JSON"):
        parse_registry("{")


def test_tokens_are_stored_as_hashes_only() -> None:
    assert TOKEN not in registry_text(alice={"token_sha256": hash_token(TOKEN)})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_registry_file_reloads_on_change_and_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "agents.json"
    path.write_text(registry_text(alice={"token_sha256": hash_token(TOKEN)}))
    clock = Clock()
    source = RegistryFile(str(path), clock=clock)
    first = source.current()
    assert isinstance(first, Registry) and set(first.agents) == {"alice"}

    path.write_text(registry_text(bob={"token_sha256": hash_token("b")}))
    os.utime(path, ns=(1, 1))
    assert source.current() is first  # checked at most once a second
    clock.now += 1.5
    assert set(source.current().agents) == {"bob"}  # type: ignore[union-attr]

    path.write_text("{broken")
    clock.now += 1.5
    state = source.current()
    assert isinstance(state, str) and "not valid JSON" in state  # no stale registry

    path.unlink()
    clock.now += 1.5
    assert "unreadable" in str(source.current())
