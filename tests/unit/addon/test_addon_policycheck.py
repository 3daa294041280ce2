"""`invoke policy.check`: the kit side of the policy check (messages and exit conditions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.errors import CageError, ConfigError
from kit.policycheck import check

EXAMPLE = Path(__file__).resolve().parents[3] / "addon" / "policy.example.yaml"
LOOSE = "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\nscan: {unsafe_fail_open: true}\n"


def test_the_example_passes_with_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    check(str(EXAMPLE), production=True)
    out = capsys.readouterr().out
    assert "valid for production" in out and "GitHub API set on" in out


def test_loosening_is_a_warning_and_a_production_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "loose.yaml"
    path.write_text(LOOSE)
    check(str(path))
    assert "loosens isolation: scan.unsafe_fail_open: true" in capsys.readouterr().err
    with pytest.raises(ConfigError) as info:
        check(str(path), production=True)
    assert info.value.problems == ["scan.unsafe_fail_open: true (not allowed with --production)"]


def test_invalid_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\nscan: {colour: red}\n")
    with pytest.raises(ConfigError, match="scan.colour: unknown key"):
        check(str(path))
    with pytest.raises(CageError, match="name the policy file"):
        check("")
