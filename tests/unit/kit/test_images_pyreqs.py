"""Requirements exported from uv.lock: exactly one group each, pinned and hashed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from kit import pyreqs
from kit.errors import RunError

ROOT = Path(__file__).resolve().parents[3]


def _names(text: str) -> set[str]:
    return {pyreqs.normalise(re.split(r"[=;\s]", line, maxsplit=1)[0]) for line in text.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    out = tmp_path_factory.mktemp("requirements")
    result = {}
    for group in pyreqs.GROUPS:
        main, special = pyreqs.write(group, ROOT, out)
        result[group] = (main.read_text(), special.read_text())
    return result


def test_each_group_holds_its_own_packages_and_no_dev_or_kit_ones(exported) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = pyproject["dependency-groups"]
    for group in pyreqs.GROUPS:
        names = _names(exported[group][0]) | _names(exported[group][1])
        declared = {pyreqs.normalise(re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0]) for d in groups[group]}
        assert declared <= names, (group, declared - names)
        for foreign in ("pytest", "invoke", "testcontainers", "kubernetes", "docker"):
            assert foreign not in names, (group, foreign)


def test_proxy_gets_mitmproxy_12_and_scanner_gets_no_torch(exported) -> None:
    proxy = exported["proxy"][0]
    assert re.search(r"^mitmproxy==12\.", proxy, re.MULTILINE)
    scanner = exported["scanner"][0] + exported["scanner"][1]
    for heavy in ("torch", "transformers", "presidio-analyzer"):
        assert heavy not in _names(scanner)


def test_every_line_is_pinned_and_hashed(exported) -> None:
    for group, (main, special) in exported.items():
        for line in (main + special).splitlines():
            assert "==" in line and "--hash=sha256:" in line, (group, line)


def test_packages_with_overridden_metadata_go_to_their_own_file(exported) -> None:
    main, special = exported["scanner"]
    assert _names(special) == {"llm-guard"}
    assert "llm-guard" not in _names(main)
    assert exported["proxy"][1] == ""


def test_overridden_reads_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.uv.dependency-metadata]]\nname = "Some_Pkg"\nrequires-dist = []\n'
    )
    assert pyreqs.overridden(tmp_path / "pyproject.toml") == {"some-pkg"}


def test_split_joins_continuation_lines_and_drops_comments() -> None:
    text = (
        "a==1 \\\n    --hash=sha256:aa \\\n    --hash=sha256:ab\n    # via b\n"
        "llm-guard==0.3.16 \\\n    --hash=sha256:cc\n"
        "zstd==1 ; python_full_version < '3.14' \\\n    --hash=sha256:dd\n"
    )
    main, special = pyreqs.split(text, {"llm-guard"})
    assert main == "a==1 --hash=sha256:aa --hash=sha256:ab\nzstd==1 ; python_full_version < '3.14' --hash=sha256:dd\n"
    assert special == "llm-guard==0.3.16 --hash=sha256:cc\n"


def test_an_unhashed_requirement_is_refused() -> None:
    with pytest.raises(RunError, match="without a pin or hash: b"):
        pyreqs.check_hashed("proxy", "a==1 \\\n    --hash=sha256:aa\nb==2\n")
    with pytest.raises(RunError, match="exported no requirement"):
        pyreqs.check_hashed("proxy", "# nothing\n")


def test_unknown_group_is_refused() -> None:
    with pytest.raises(ValueError):
        pyreqs.export_argv("dev")


def test_export_is_locked_and_excludes_the_project() -> None:
    argv = pyreqs.export_argv("proxy")
    assert "--locked" in argv and "--no-emit-project" in argv and "--no-default-groups" in argv
    assert argv[argv.index("--only-group") + 1] == "proxy"


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    main, _ = pyreqs.write("sink", ROOT, tmp_path)
    before = main.stat().st_mtime_ns
    pyreqs.write("sink", ROOT, tmp_path)
    assert main.stat().st_mtime_ns == before
