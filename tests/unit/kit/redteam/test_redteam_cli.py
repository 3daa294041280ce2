"""`invoke redteam` on Compose: which cage it attacks, what it removes, its exit code and reports.

The cage, the runner and the Claude scenarios are stand-ins here (the live run is
tests/redteam); what is under test is the command's own logic: a running
red-team cage is reused and left alone, a new one is removed unless ``keep``,
the exit code is non-zero exactly when the scorecard fails, and the reports are
written either way.
"""

from __future__ import annotations

import json

import pytest
from invoke import Context, Exit

import tasks
from kit import settings
from kit.errors import CageError
from kit.redteam import claude_cli, cli, runner, testcage
from kit.redteam.classify import Verdict
from kit.redteam.scorecard import Report


class Settings:
    project = "yc-unit"


class Cage:
    def __init__(self, calls: list[str]):
        self.calls = calls

    def stop(self) -> None:
        self.calls.append("stop")


def _report(verdict: str) -> Report:
    row = Verdict("content-query", "content", "a token in the query", verdict, "proxy-block", "delivered", verdict,
                  (verdict,), "because", 3.0)
    return Report("unit01", "compose", "dev", 1.0, [row])


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    record: list[str] = []
    monkeypatch.setattr(settings, "load", lambda *a, **k: Settings())
    monkeypatch.setattr(testcage, "find", lambda project: None)
    monkeypatch.setattr(testcage, "start", lambda project, images: record.append(
        f"start {project}" + (" with the model image" if "model" in images else "")) or Cage(record))
    return record


def _attack_returns(monkeypatch, calls: list[str], code: int) -> None:
    monkeypatch.setattr(cli, "_attack", lambda cage, agent, only, offhost, reports: calls.append(f"attack {only!r}") or code)


def test_a_new_cage_is_started_attacked_and_removed(monkeypatch, calls, tmp_path):
    _attack_returns(monkeypatch, calls, 0)
    assert cli.run(reports=tmp_path) == 0
    assert calls == ["start yc-unit-redteam", "attack ''", "stop"]


def test_keep_leaves_the_new_cage_running(monkeypatch, calls, tmp_path):
    _attack_returns(monkeypatch, calls, 0)
    cli.run(keep=True, reports=tmp_path)
    assert "stop" not in calls


def test_a_running_red_team_cage_is_reused_and_left_alone(monkeypatch, calls, tmp_path):
    monkeypatch.setattr(testcage, "find", lambda project: Cage(calls) if project == "yc-unit-redteam" else None)
    _attack_returns(monkeypatch, calls, 0)
    cli.run(only="net-", reports=tmp_path)
    assert calls == ["attack 'net-'"]


def test_a_failing_attack_still_removes_the_cage(monkeypatch, calls, tmp_path):
    def boom(*args):
        raise RuntimeError("sink died")

    monkeypatch.setattr(cli, "_attack", boom)
    with pytest.raises(RuntimeError):
        cli.run(reports=tmp_path)
    assert calls[-1] == "stop"


def test_both_backends_at_once_is_refused(calls, tmp_path):
    with pytest.raises(CageError, match="choose one backend"):
        cli.run(compose=True, kind=True, reports=tmp_path)
    assert calls == []


def test_claude_ids_alone_skip_the_catalog(monkeypatch, calls, tmp_path):
    _attack_returns(monkeypatch, calls, 0)
    monkeypatch.setattr(claude_cli, "run", lambda cage, agent, scenarios, keep, reports:
                        calls.append(f"claude {list(scenarios)}") or 1)
    assert cli.run(only="claude-curl-noproxy", reports=tmp_path) == 1
    # The Claude scenarios need the scripted model's image: it is built with the cage's when missing.
    assert calls == ["start yc-unit-redteam with the model image", "claude ['curl-noproxy']", "stop"]


def test_the_worst_exit_code_of_catalog_and_claude_wins(monkeypatch, calls, tmp_path):
    _attack_returns(monkeypatch, calls, 1)
    monkeypatch.setattr(claude_cli, "run", lambda cage, agent, scenarios, keep, reports: 0)
    assert cli.run(claude=True, reports=tmp_path) == 1


@pytest.mark.parametrize(("verdict", "code"), [("blocked", 0), ("leaked", 1), ("control-failed", 1), ("error", 1)])
def test_score_exit_code_follows_the_scorecard_and_writes_the_reports(monkeypatch, tmp_path, capsys, verdict, code):
    seen = {}
    monkeypatch.setattr(runner, "run", lambda world, options, progress=None: seen.update(ids=options.ids) or _report(verdict))
    assert cli._score("world", "", "content-query, net-", tmp_path) == code
    assert seen["ids"] == ["content-query", "net-"]
    assert "RESULT: " + ("PASS" if code == 0 else "FAIL") in capsys.readouterr().out
    doc = json.loads((tmp_path / "redteam-compose.json").read_text())
    assert doc["ok"] is (code == 0) and (tmp_path / "redteam-compose.xml").exists()


def test_the_task_exits_with_the_runs_code(monkeypatch):
    monkeypatch.setattr(cli, "run", lambda **kw: 1)
    with pytest.raises(Exit) as failed:
        tasks.redteam(Context())
    assert failed.value.code == 1
    monkeypatch.setattr(cli, "run", lambda **kw: 0)
    tasks.redteam(Context())  # a passing scorecard: no Exit
