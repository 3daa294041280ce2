"""Base image selection (registry vs offline) and the offline build's pure parts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kit import base_image, base_offline
from kit.base_image import OFFICIAL_BASE
from kit.errors import CageError

DAY = dt.date(2026, 5, 10)


class FakeEngine:
    def __init__(self, *, local: set[str] = frozenset(), pull_ok: bool = False, pull_output: str = "no such host"):
        self.local = set(local)
        self.pull_ok = pull_ok
        self.pull_output = pull_output
        self.pulls: list[tuple[str, float]] = []

    def has_image(self, ref: str) -> bool:
        return ref in self.local

    def pull(self, ref: str, timeout: float) -> tuple[bool, str]:
        self.pulls.append((ref, timeout))
        if self.pull_ok:
            self.local.add(ref)
        return self.pull_ok, self.pull_output

    def image_refs(self, repository: str) -> list[str]:
        return sorted(r for r in self.local if r.startswith(repository + ":"))


def choose(mode: str, engine: FakeEngine, **kw) -> base_image.BaseChoice:
    return base_image.choose(mode, engine, today=lambda: DAY, **kw)


def test_auto_uses_the_pinned_image_already_here_without_network() -> None:
    engine = FakeEngine(local={OFFICIAL_BASE, "yolo-cage/base:trixie-20260101"})
    got = choose("auto", engine)
    assert (got.ref, got.source, got.build_needed) == (OFFICIAL_BASE, "registry", False)
    assert engine.pulls == []


def test_auto_reuses_the_newest_offline_base_before_probing() -> None:
    engine = FakeEngine(local={"yolo-cage/base:trixie-20260101", "yolo-cage/base:trixie-20260301", "yolo-cage/base:probe"})
    got = choose("auto", engine)
    assert (got.ref, got.source, got.build_needed) == ("yolo-cage/base:trixie-20260301", "offline", False)
    assert engine.pulls == []


def test_auto_pulls_with_a_short_timeout_when_nothing_is_here() -> None:
    engine = FakeEngine(pull_ok=True)
    got = choose("auto", engine)
    assert (got.ref, got.source, got.build_needed) == (OFFICIAL_BASE, "registry", False)
    assert engine.pulls == [(OFFICIAL_BASE, base_image.PULL_PROBE_TIMEOUT)]
    assert base_image.PULL_PROBE_TIMEOUT <= 60


def test_auto_falls_back_to_building_offline_and_says_why() -> None:
    engine = FakeEngine(pull_ok=False, pull_output="Error response from daemon: lookup registry: no such host\n")
    got = choose("auto", engine)
    assert (got.ref, got.source, got.build_needed) == ("yolo-cage/base:trixie-20260510", "offline", True)
    assert "no such host" in got.reason


def test_registry_mode_never_falls_back() -> None:
    engine = FakeEngine(local={"yolo-cage/base:trixie-20260101"}, pull_ok=False, pull_output="timeout")
    with pytest.raises(CageError, match="--base offline"):
        choose("registry", engine)
    assert engine.pulls == [(OFFICIAL_BASE, base_image.PULL_TIMEOUT)]


def test_registry_mode_uses_the_local_copy() -> None:
    engine = FakeEngine(local={OFFICIAL_BASE})
    assert choose("registry", engine).ref == OFFICIAL_BASE and engine.pulls == []


def test_offline_mode_never_touches_the_registry() -> None:
    engine = FakeEngine(local={OFFICIAL_BASE})
    got = choose("offline", engine)
    assert got.source == "offline" and got.build_needed and engine.pulls == []


def test_refresh_builds_a_new_offline_base_even_if_one_exists() -> None:
    engine = FakeEngine(local={"yolo-cage/base:trixie-20260101"})
    got = choose("offline", engine, refresh=True)
    assert got.build_needed and got.ref == "yolo-cage/base:trixie-20260510"


def test_a_custom_registry_image_replaces_the_pinned_one() -> None:
    engine = FakeEngine(local={"mirror.example/debian:trixie-slim"})
    assert choose("auto", engine, official="mirror.example/debian:trixie-slim").ref == "mirror.example/debian:trixie-slim"


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(CageError, match="auto, registry, offline"):
        choose("cloud", FakeEngine())


def test_newest_offline_ignores_other_tags() -> None:
    refs = ["yolo-cage/base:probe", "yolo-cage/base:trixie-2026", "yolo-cage/base:bookworm-20990101"]
    assert base_image.newest_offline(refs) is None
    assert base_image.newest_offline(refs + ["yolo-cage/base:trixie-20250101"]) == "yolo-cage/base:trixie-20250101"


def test_every_dockerfile_defaults_to_the_pinned_base() -> None:
    """Each Dockerfile starts with ARG BASE_IMAGE=<the kit's pin> before its first FROM."""
    root = Path(__file__).resolve().parents[3] / "images"
    dockerfiles = sorted(root.glob("*/Dockerfile"))
    assert {p.parent.name for p in dockerfiles} >= {"agent", "proxy", "scanner", "netguard", "sink"}
    for path in dockerfiles:
        lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert lines[0] == f"ARG BASE_IMAGE={OFFICIAL_BASE}", path
        assert lines[1].startswith("FROM ${BASE_IMAGE}"), path
        assert ":latest" not in path.read_text(), path


# -- the offline build's pure parts --------------------------------------------


def test_mirror_comes_from_what_debootstrap_wrote() -> None:
    text = "deb http://mirror.example/debian trixie main\n"
    assert base_offline.mirror_from_sources_list(text) == "http://mirror.example/debian"
    with pytest.raises(CageError):
        base_offline.mirror_from_sources_list("deb http://mirror.example/debian bookworm main\n")


def test_sources_add_updates_and_security_suites() -> None:
    text = base_offline.deb822_sources("http://mirror.example/debian")
    assert "Suites: trixie trixie-updates" in text
    assert "URIs: http://mirror.example/debian-security\nSuites: trixie-security" in text
    assert text.count("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg") == 2


def test_write_sources_replaces_the_one_line_list(tmp_path: Path) -> None:
    (tmp_path / "etc/apt").mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list").write_text("deb http://mirror.example/debian trixie main\n")
    base_offline.write_sources(tmp_path)
    assert not (tmp_path / "etc/apt/sources.list").exists()
    assert "trixie-security" in (tmp_path / "etc/apt/sources.list.d/debian.sources").read_text()


def test_slim_keeps_copyright_and_drops_docs_caches_and_host_files(tmp_path: Path) -> None:
    files = {
        "usr/share/doc/apt/copyright": "licence",
        "usr/share/doc/apt/changelog.gz": "x",
        "usr/share/man/man1/apt.1.gz": "x",
        "usr/share/locale/de/LC_MESSAGES/apt.mo": "x",
        "var/lib/apt/lists/some_Packages": "x",
        "var/cache/apt/archives/x.deb": "x",
        "var/cache/apt/pkgcache.bin": "x",
        "etc/resolv.conf": "nameserver 10.0.0.1",
        "etc/hostname": "buildhost",
        "usr/bin/apt": "binary",
        "dev/null": "x",
    }
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content)
    base_offline.slim(tmp_path)
    assert (tmp_path / "usr/share/doc/apt/copyright").read_text() == "licence"
    assert (tmp_path / "usr/bin/apt").exists()
    for gone in ("usr/share/doc/apt/changelog.gz", "usr/share/man/man1", "usr/share/locale/de",
                 "var/lib/apt/lists/some_Packages", "var/cache/apt/archives/x.deb", "var/cache/apt/pkgcache.bin",
                 "dev/null"):
        assert not (tmp_path / gone).exists(), gone
    assert (tmp_path / "etc/resolv.conf").read_text() == ""
    assert (tmp_path / "etc/hostname").read_text() == ""


def test_offline_build_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.errors import PrerequisiteError

    monkeypatch.setattr(base_offline.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(base_offline.shutil, "which", lambda name: None)
    with pytest.raises(PrerequisiteError) as err:
        base_offline.check_prerequisites()
    message = str(err.value)
    assert "needs root" in message and "--base registry" in message
    assert "apt-get install debootstrap" in message
