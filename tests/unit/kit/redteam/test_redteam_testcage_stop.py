"""Stopping a red-team cage removes its state directory (a CA key and test keys of that run only)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from kit import state
from kit.redteam import testcage


@dataclass
class FakeBackend:
    project: str
    calls: list[dict] = field(default_factory=list)

    def down(self, **kwargs: object) -> None:
        self.calls.append(kwargs)


class FakeThing:
    def __init__(self) -> None:
        self.removed = False

    def remove(self) -> None:
        self.removed = True


def _cage(project: str) -> tuple[testcage.TestCage, FakeBackend, FakeThing]:
    backend, sink = FakeBackend(project), FakeThing()
    cage = testcage.TestCage(backend, None, "run1", sink, FakeThing(), ipaddress.ip_network("10.214.9.0/24"),
                             ipaddress.ip_network("fd7d:1:2::/64"))
    return cage, backend, sink


def test_stop_removes_the_cages_state_directory_and_nothing_else(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path))
    own = state.project_dir("ycrt-a")
    (own / "ca").mkdir()
    (own / "ca" / "ca.key").write_text("test key")
    other = state.project_dir("yolo-cage")  # the user's own cage: never touched
    (other / "ca.key").write_text("user key")
    cage, backend, sink = _cage("ycrt-a")
    cage.stop()
    assert backend.calls == [{"remove_data": True}] and sink.removed
    assert not own.exists()
    assert (other / "ca.key").read_text() == "user key"


def test_stop_removes_the_state_even_when_down_fails(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path))
    own = state.project_dir("ycrt-b")
    cage, backend, _ = _cage("ycrt-b")

    def broken(**_: object) -> None:
        raise RuntimeError("engine gone")

    backend.down = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        cage.stop()
    assert not own.exists()
