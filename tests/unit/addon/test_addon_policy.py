"""The policy file: defaults, strictness, all errors at once, and the production check."""

from __future__ import annotations

from pathlib import Path

import pytest

from addon import policy
from addon.policy import SEED_BLOCKLIST, PolicyError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "addon" / "policy.example.yaml"
HEAD = "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        policy.parse(text, "test.yaml")
    return info.value.problems


def test_the_minimal_policy_is_all_defaults() -> None:
    p = policy.parse(HEAD)
    assert p == policy.default_policy()
    assert p.destinations.blocked_hosts == SEED_BLOCKLIST
    assert p.destinations.ports == (80, 443)
    assert p.scan.mode == "enforce" and not p.scan.unsafe_fail_open
    assert policy.loosening(p) == []


def test_the_example_policy_loads_and_passes_production() -> None:
    p = policy.check(EXAMPLE, production=True)
    assert p.scan.mode_for("api.anthropic.com") == "report"
    assert p.scan.mode_for("example.com") == "enforce"
    assert "webhook.site" in p.destinations.blocked_hosts


def test_api_version_and_kind_are_required_and_checked() -> None:
    assert problems("destinations: {}\n") == ["apiVersion: required", "kind: required"]
    found = problems("apiVersion: yolo-cage.dev/v2\nkind: Settings\n")
    assert len(found) == 2 and found[0].startswith("apiVersion:") and found[1].startswith("kind:")


def test_every_problem_is_reported_at_once_with_location_and_value() -> None:
    text = HEAD + (
        "destinations:\n"
        "  ports: [80, 70000]\n"
        "  colour: blue\n"
        "  unsafe_allow_private_networks: [10.0.0.1/8]\n"
        "scan:\n"
        "  mode: loud\n"
        "rules:\n"
        "  deny:\n"
        "    - {id: x, hosts: [a.example], paths: [nope]}\n"
    )
    found = problems(text)
    assert len(found) >= 5
    joined = "\n".join(found)
    assert "destinations.ports[1]:" in joined and "70000" in joined
    assert "destinations.colour: unknown key (value 'blue')" in joined
    assert "destinations.unsafe_allow_private_networks[0]:" in joined and "10.0.0.1/8" in joined
    assert "scan.mode:" in joined and "'loud'" in joined
    assert "rules.deny[0].paths[0]:" in joined


def test_yaml_1_1_surprises_are_not_accepted() -> None:
    # `off` stays a string (a valid mode), `yes` is not a boolean, 0443 is not octal.
    p = policy.parse(HEAD + "scan: {mode: off}\n")
    assert p.scan.mode == "off"
    assert "scan.unsafe_fail_open" in problems(HEAD + "scan: {unsafe_fail_open: yes}\n")[0]
    assert "destinations.ports[0]" in problems(HEAD + "destinations: {ports: [0443]}\n")[0]


def test_duplicate_keys_are_errors() -> None:
    found = problems(HEAD + "scan: {}\nscan: {mode: report}\n")
    assert found == ["line 4: duplicate key 'scan'"]


def test_host_patterns_are_canonical_and_never_ip_addresses() -> None:
    p = policy.parse(HEAD + "destinations: {blocklist: [Evil.Example., ｅｖｉｌ２.example]}\n")
    assert p.destinations.blocklist == ("evil.example", "evil2.example")
    assert "IP address" in problems(HEAD + "destinations: {blocklist: ['10.0.0.1']}\n")[0]


def test_loosening_lists_every_unsafe_setting_and_production_refuses_them(tmp_path: Path) -> None:
    text = HEAD + (
        "destinations:\n"
        "  unsafe_allow_private_networks: [127.0.0.0/8]\n"
        "  unsafe_host_overrides: {sink.test: 127.0.0.1}\n"
        "  unsafe_allow_raw_tunnels: true\n"
        "scan:\n"
        "  unsafe_fail_open: true\n"
        "  destinations: [{hosts: [x.example], mode: 'off'}]\n"
        "rules: {unsafe_disable_github_defaults: true}\n"
    )
    found = policy.loosening(policy.parse(text))
    assert found == [
        "destinations.unsafe_allow_raw_tunnels: true",
        "destinations.unsafe_allow_private_networks: 127.0.0.0/8",
        "destinations.unsafe_host_overrides: sink.test=127.0.0.1",
        "scan.unsafe_fail_open: true",
        "rules.unsafe_disable_github_defaults: true",
        "scan.destinations[0].mode: off (hosts x.example)",
    ]
    path = tmp_path / "p.yaml"
    path.write_text(text)
    assert policy.check(path).destinations.unsafe_allow_raw_tunnels
    with pytest.raises(PolicyError) as info:
        policy.check(path, production=True)
    assert len(info.value.problems) == 6
    assert all(p.endswith("(not allowed with --production)") for p in info.value.problems)


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        policy.load(tmp_path / "missing.yaml")
    assert problems("- a\n- b\n") == ["the file must be a mapping with apiVersion and kind"]
    assert problems("a: [\n")[0].startswith("not valid YAML")
