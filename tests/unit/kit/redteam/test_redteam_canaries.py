"""Canaries look like the real thing, are fresh each run, and say where they live."""

from __future__ import annotations

import re
import zlib

import pytest

from kit.redteam import canaries

FORMATS = {
    "aws-access-key-id": r"AKIA[A-Z2-7]{16}",
    "aws-secret-access-key": r"[A-Za-z0-9/+]{40}",
    "github-pat": r"ghp_[A-Za-z0-9]{36}",
    "anthropic-api-key": r"sk-ant-api03-[A-Za-z0-9_-]{93}AA",
    "openai-api-key": r"sk-proj-[A-Za-z0-9]{64}T3BlbkFJ[A-Za-z0-9]{64}",
    "stripe-secret-key": r"sk_live_[A-Za-z0-9]{48}",
    "slack-bot-token": r"xoxb-\d{12}-\d{13}-[A-Za-z0-9]{24}",
    "database-url-password": r"[A-Za-z0-9]{24}",
    "github-fine-grained-pat": r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
    "openssh-private-key": r"-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END OPENSSH PRIVATE KEY-----\n",
}


@pytest.fixture(scope="module")
def canary_set() -> canaries.CanarySet:
    return canaries.generate("0a1b2c")


def test_every_provider_format(canary_set):
    for canary in canary_set.canaries:
        assert re.fullmatch(FORMATS[canary.provider], canary.value), canary.name


def test_github_classic_token_carries_a_valid_checksum():
    token = canaries.github_classic()
    body, check = token[4:34], token[34:]
    assert check == canaries._base62(zlib.crc32(body.encode()), 6)


def test_fresh_every_run():
    first, second = canaries.generate(), canaries.generate()
    assert first.run_id != second.run_id
    assert not {c.value for c in first.canaries} & {c.value for c in second.canaries}


def test_several_places_and_providers(canary_set):
    sources = {c.source.env and "env" or c.source.file.split("/")[-1] for c in canary_set.canaries}
    assert {"env", "credentials", ".env", "id_ed25519", ".git-credentials"} <= sources
    assert len({c.provider for c in canary_set.canaries}) >= 9


def test_planted_files_hold_the_values(canary_set):
    for canary in canary_set.canaries:
        if canary.source.file:
            content, mode = canary_set.files[canary.source.file]
            assert canary.value in content, canary.name
            assert mode == 0o600
    assert set(canary_set.env()) == {c.source.env for c in canary_set.canaries if c.source.env}


def test_partial_leaks_are_measured_on_random_material_only(canary_set):
    anthropic = canary_set.by_name("env-anthropic")
    assert not anthropic.material.startswith("sk-ant")
    assert all(len(f) == canaries.FRAGMENT for f in anthropic.fragments())
    assert "sk-ant-api03" not in "".join(anthropic.fragments())[:12]


def test_ssh_material_is_the_secret_seed_not_the_fixed_layout():
    first_pem, first = canaries.ssh_key()
    second_pem, second = canaries.ssh_key()
    body = lambda pem: "".join(line for line in pem.splitlines() if not line.startswith("-----"))  # noqa: E731
    assert first in body(first_pem) and second in body(second_pem)
    assert body(first_pem)[:82] == body(second_pem)[:82]  # the constant header is excluded...
    assert first[:12] != second[:12] and len(first) == 42  # ...and what is kept differs key to key


def test_plant_spec_is_json_ready(canary_set):
    spec = canaries.plant_spec(canary_set)
    assert set(spec["sources"]) == {c.name for c in canary_set.canaries}
    assert spec["sources"]["env-github"] == {"env": "GITHUB_TOKEN"}
    assert spec["sources"]["dotenv-db-password"] == {"file": "workspace/.env", "after": "://app:"}


def test_unknown_canary_is_a_clear_error(canary_set):
    with pytest.raises(KeyError, match="no canary named"):
        canary_set.by_name("nope")


def test_where_planted_names_the_variable_the_file_or_no_place(canary_set):
    where_planted, Canary, Source = canaries.where_planted, canaries.Canary, canaries.Source
    assert where_planted(canary_set.by_name("env-github")) == "env GITHUB_TOKEN"
    assert where_planted(canary_set.by_name("file-aws-secret")) == "file ~/.aws/credentials"
    assert where_planted(canary_set.by_name("dotenv-stripe")) == "file <workspace>/.env"
    unplanted = Canary("bound-anthropic-key", "unplanted secret", "sk-ant-api03-x", Source())
    assert where_planted(unplanted) == "not in the agent"
