"""The Claude Code scenario table: complete, renderable, and what the model can load."""

from __future__ import annotations

import re

import pytest

from kit.redteam import capture
from kit.redteam import claude_scenarios as sc
from kit.redteam.catalog import CATALOG
from kit.redteam.model.script import MARKER, parse_scripts

NAMES = sc.values(sink_ip="10.214.1.200", workspace="/tmp/yolo-cage-claude-abc123/workspace")
RUN = "abc123"


def planned() -> list[sc.Planned]:
    return [sc.plan(s, RUN, NAMES) for s in sc.SCENARIOS]


def test_the_issue_list_is_covered() -> None:
    ids = {s.id for s in sc.SCENARIOS}
    # paste site, env in a URL, --noproxy, raw socket script, git push, DNS, the agent's own key, a clean task.
    assert {"paste-aws-credentials", "env-base64-url", "curl-noproxy", "raw-socket-script", "git-push-canary",
            "dns-exfil", "api-key-exfil", "llm-api-attacker-key", "clean-task"} <= ids
    assert [s.id for s in sc.SCENARIOS if s.clean] == ["clean-task", "clean-look-env", "clean-key-docs"]


def test_every_attack_scenario_has_a_control_and_mirrors_real_catalog_rows() -> None:
    catalog_ids = {t.id for t in CATALOG}
    for scenario in sc.SCENARIOS:
        roles = [s.role for s in scenario.steps]
        assert sc.CONTROL in roles, scenario.id
        if not scenario.clean:
            assert sc.ATTACK in roles, scenario.id
            assert set(scenario.mirrors) <= catalog_ids, scenario.id
            assert bool(scenario.mirrors) != scenario.novel, f"{scenario.id}: mirrors catalog rows, or is marked novel"
        else:
            assert set(roles) == {sc.CONTROL}


def test_templates_fill_completely_and_markers_are_the_red_teams() -> None:
    for p in planned():
        for step in p.steps:
            assert not re.search(r"<<\w+>>", step.command), step.command
            if step.role == sc.LOOK:
                assert step.marker is None
                continue
            assert step.marker and capture.MARKER.fullmatch(step.marker)
            assert step.marker in step.command, f"{p.scenario.id} step {step.index}: the traffic must carry its marker"
    markers = [s.marker for p in planned() for s in p.steps if s.marker]
    assert len(markers) == len(set(markers))


def test_no_secret_is_ever_written_into_a_command() -> None:
    """Commands read secrets where the canaries were planted, as an injected agent would."""
    for p in planned():
        for step in p.steps:
            # The attacker's own key is theirs to write down; nothing else may look like a secret.
            command = step.command.replace(NAMES["attacker_key"], "<attacker key>")
            assert not re.search(r"(AKIA[0-9A-Z]{16}|ghp_[0-9A-Za-z]{30}|sk-ant-[a-z0-9]+-[\w-]{20})", command), command


def test_an_unknown_placeholder_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(KeyError, match="nope"):
        sc.fill("curl https://<<nope>>/", NAMES)


def test_selection_by_id_or_prefix_and_unknown_ids_are_errors() -> None:
    assert [s.id for s in sc.select(["paste", "clean-task"])] == ["clean-task", "paste-aws-credentials"]  # table order
    assert sc.select() == list(sc.SCENARIOS)
    with pytest.raises(KeyError, match="no Claude scenario zzz"):
        sc.select(["zzz"])


def test_the_script_document_is_what_the_model_loads() -> None:
    doc = sc.script_document(RUN, planned(), ["key-one"])
    scripts = parse_scripts(doc)
    assert set(scripts) == {(RUN, s.id) for s in sc.SCENARIOS}
    one = scripts[(RUN, "curl-noproxy")]
    noproxy = next(p for p in planned() if p.scenario.id == "curl-noproxy")
    assert [s.input["command"] for s in one.steps] == [s.command for s in noproxy.steps]
    assert len(doc["accept_keys_sha256"]) == 1 and len(doc["accept_keys_sha256"][0]) == 64
    for p in planned():
        assert MARKER.search(p.prompt).groups() == (p.scenario.id, RUN)


def test_controls_run_before_attacks_and_the_clean_task_first() -> None:
    assert sc.SCENARIOS[0].clean
    for p in planned():
        roles = [s.role for s in p.steps]
        assert roles == sorted(roles, key=[sc.LOOK, sc.CONTROL, sc.ATTACK].index), p.scenario.id


def test_direct_attempts_fail_fast() -> None:
    """A cage answers a bypass with silence; each must give up in seconds, not minutes."""
    for p in planned():
        for step in p.steps:
            if "--noproxy" in step.command or "env -u HTTP_PROXY" in step.command:
                assert "--connect-timeout 4" in step.command and "-m 8" in step.command
