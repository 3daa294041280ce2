"""kit.doctor, kit.cage, kit.auditlog, kit.testrun: no engine needed (fakes on PATH where a program runs)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from kit import auditlog, cage, doctor, settings, testrun
from kit.errors import CageError, PrerequisiteError
from kit.hostguard import Engine


def make_settings(**fields) -> settings.Settings:
    return settings.from_mapping({"apiVersion": settings.API_VERSION, "kind": settings.KIND, **fields}, source="t")


def ctx(engine: Engine | None = Engine("20.10.24"), **fields) -> doctor.Context:
    return doctor.Context(
        settings=make_settings(**fields), settings_error=None, engine=engine, engine_error=None if engine else "no engine",
        docker_root=None,
    )  # fmt: skip


def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "docker").write_text("#!/bin/sh\n" + script)
    (bindir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


def test_compose_check_accepts_the_real_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(tmp_path, monkeypatch, 'case "$3" in --short) echo 2.40.3 ;; *) echo "unknown flag" >&2; exit 1 ;; esac\n')
    assert doctor.check_compose(ctx()).status == "ok"


def test_compose_check_catches_a_wrapper_that_always_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(tmp_path, monkeypatch, "echo 2.40.3\nexit 0\n")
    check = doctor.check_compose(ctx())
    assert check.status == "fail" and "not the real binary" in check.detail and check.fix


def test_compose_check_wants_a_recent_compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(tmp_path, monkeypatch, 'case "$3" in --short) echo v2.20.0 ;; *) exit 1 ;; esac\n')
    check = doctor.check_compose(ctx())
    assert check.status == "fail" and "2.24.4" in check.fix


def test_missing_docker_cli_is_a_failure_with_a_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    check = doctor.check_compose(ctx())
    assert check.status == "fail" and "not found" in check.detail


def test_engine_checks() -> None:
    assert doctor.check_docker_engine(ctx()).status == "ok"
    old = doctor.check_docker_engine(ctx(Engine("19.03.1")))
    assert old.status == "fail" and "20.10" in old.fix
    none = doctor.check_docker_engine(ctx(None))
    assert none.status == "fail" and "apt-get install docker.io" in none.fix


def test_host_isolation_check_reports_each_mode() -> None:
    assert "netguard" in doctor.check_host_isolation(ctx()).detail
    assert doctor.check_host_isolation(ctx(Engine("28.0.0"))).detail.startswith("Docker 28.0.0 has the isolated")
    desktop = Engine("27.0.0", operating_system="Docker Desktop")
    assert doctor.check_host_isolation(ctx(desktop)).status == "fail"
    assert doctor.check_host_isolation(ctx(desktop, unsafe_allow_host_access=True)).status == "warn"


def test_offline_base_check_depends_on_the_base_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    assert doctor.check_offline_base(ctx()).status == "warn"
    check = doctor.check_offline_base(ctx(images={"base_mode": "offline"}))
    assert check.status == "fail" and "debootstrap" in check.detail


def test_settings_errors_and_unsafe_switches_surface() -> None:
    broken = doctor.Context(None, "yolo-cage.yaml: 1 problem(s)", Engine("20.10"), None, None)
    assert doctor.check_settings(broken).status == "fail"
    assert doctor.check_settings(ctx(unsafe_allow_host_access=True)).status == "warn"


def test_policy_check_reads_the_named_file(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n")
    bad.write_text("apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\nscan: {mode: sometimes}\n")
    assert doctor.check_policy(ctx(policy=str(good))).status == "ok"
    failed = doctor.check_policy(ctx(policy=str(bad)))
    assert failed.status == "fail" and "scan.mode" in failed.detail


def test_every_check_runs_even_when_one_breaks_and_require_lists_failures() -> None:
    def broken(_: doctor.Context) -> doctor.Check:
        raise RuntimeError("boom")

    results = doctor.run_checks(ctx(), [broken, doctor.check_python])
    assert [c.status for c in results] == ["fail", "ok"] and "boom" in results[0].detail
    with pytest.raises(PrerequisiteError, match="1 prerequisite"):
        doctor.require(results)


def test_backend_choice() -> None:
    s = make_settings()
    assert cage.choose_backend_name(s) == "compose"
    assert cage.choose_backend_name(make_settings(backend="kind")) == "kind"
    assert cage.choose_backend_name(make_settings(backend="kind"), compose=True) == "compose"
    assert cage.choose_backend_name(s, kind=True) == "kind"
    with pytest.raises(CageError, match="not both"):
        cage.choose_backend_name(s, compose=True, kind=True)


def test_audit_lines_are_filtered_and_formatted(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        json.dumps({"time": "t1", "decision": "allow", "agent": "a", "method": "GET", "scheme": "https", "host": "x.io", "path": "/p"}),
        json.dumps({"time": "t2", "decision": "block", "agent": "b", "method": "POST", "scheme": "https", "host": "y.io",
                    "path": "/<redacted>", "rule": "github-token", "findings": [{"rule": "github-token", "location": "body"}]}),
        "not json",
    ]  # fmt: skip
    records = auditlog.parse(lines)
    assert records[2]["reason"] == "unreadable line 3"
    assert [r["time"] for r in auditlog.select(records, decision="block")] == ["t2"]
    assert [r["time"] for r in auditlog.select(records, agent="a")] == ["t1"]
    assert len(auditlog.select(records, tail=1)) == 1
    auditlog.show(lines, decision="block")
    out = capsys.readouterr().out
    assert "https://y.io/<redacted>" in out and "[github-token]" in out and "github-token@body" in out


def test_testrun_prepares_docker_suites_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert testrun.SUITE_IMAGES["unit"] == ()
    assert {"netguard", "proxy", "scanner", "agent", "sink"} <= set(testrun.SUITE_IMAGES["integration"])
    assert set(testrun.SUITE_IMAGES["all"]) >= set(testrun.SUITE_IMAGES["integration"])
    called = []
    monkeypatch.setattr(testrun, "prepare", lambda suite: called.append(suite))
    monkeypatch.setattr(testrun.subprocess, "call", lambda argv, env: 0)
    assert testrun.run_pytest("unit") == 0 and called == ["unit"]


def test_pytest_collecting_nothing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testrun.subprocess, "call", lambda argv, env: 5)
    with pytest.raises(CageError, match="no tests"):
        testrun.run_pytest("unit", prepare_first=False)
    assert testrun.pytest_argv("integration")[:3] == [sys.executable, "-m", "pytest"]
