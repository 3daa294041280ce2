"""`invoke build` planning: which images, in what order, with which arguments.
The builds themselves run in tests/integration/test_images.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kit import cabundle, images
from kit.errors import CageError
from kit.images import IMAGES, BuildOptions

ROOT = Path(__file__).resolve().parents[3]


def test_default_builds_every_product_image_and_no_test_image() -> None:
    names = [s.name for s in images.selected(BuildOptions())]
    assert names == ["proxy", "scanner", "netguard", "agent"]


def test_only_keeps_build_order_and_all_adds_test_images() -> None:
    assert images.parse_only("agent, proxy") == ("agent", "proxy")
    assert [s.name for s in images.selected(BuildOptions(only=("agent", "proxy")))] == ["proxy", "agent"]
    assert "sink" in images.parse_only("all")
    assert images.parse_only("") == () and images.parse_only(None) == ()


def test_unknown_image_names_are_listed_with_the_choices() -> None:
    with pytest.raises(CageError) as err:
        images.parse_only("agent,prxy,sinc")
    assert "prxy, sinc" in str(err.value) and "netguard" in str(err.value)


class _Settings:
    tag = "v1"
    base_image = "mirror.example/debian:trixie-slim"
    base_mode = "offline"
    extra_ca_bundle = "none"


def test_options_take_settings_and_flags_win() -> None:
    opts = images.options(_Settings(), only="sink", base=None, extra_ca=None)
    assert (opts.only, opts.base, opts.extra_ca, opts.tag) == (("sink",), "offline", "none", "v1")
    assert opts.base_image == "mirror.example/debian:trixie-slim"
    flagged = images.options(_Settings(), base="registry", extra_ca="/x.pem", no_cache=True)
    assert (flagged.base, flagged.extra_ca, flagged.no_cache) == ("registry", "/x.pem", True)
    assert images.options(None) == BuildOptions()


def _extra(tmp_path: Path) -> cabundle.ExtraCA:
    return cabundle.ExtraCA("test", tmp_path / "ca.pem", b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")


def test_build_argv_pins_base_context_and_stable_labels(tmp_path: Path) -> None:
    argv = images.build_argv(IMAGES["scanner"], BuildOptions(tag="t1"), "yolo-cage/base:trixie-20260101", _extra(tmp_path))
    assert argv[:4] == ["docker", "build", "--file", "images/scanner/Dockerfile"]
    assert argv[-1] == "."
    assert "yolo-cage/scanner:t1" in argv
    assert "BASE_IMAGE=yolo-cage/base:trixie-20260101" in argv
    assert "yolo-cage.extra-ca=builder" in argv
    assert "--no-cache" not in argv
    assert not any(re.search(r"\d{4}-\d\d-\d\dT", a) for a in argv), "a timestamp label would defeat the cache"


def test_runtime_extra_ca_only_reaches_the_proxy(tmp_path: Path) -> None:
    opts = BuildOptions(runtime_extra_ca=True)
    proxy = images.build_argv(IMAGES["proxy"], opts, "b", _extra(tmp_path))
    agent = images.build_argv(IMAGES["agent"], opts, "b", _extra(tmp_path))
    assert "RUNTIME_EXTRA_CA=1" in proxy and "yolo-cage.extra-ca=builder+runtime" in proxy
    assert not any(a.startswith("RUNTIME_EXTRA_CA") for a in agent)
    assert "RUNTIME_EXTRA_CA=0" in images.build_argv(IMAGES["proxy"], BuildOptions(), "b", _extra(tmp_path))


def test_images_without_the_extra_ca_say_so(tmp_path: Path) -> None:
    assert "yolo-cage.extra-ca=none" in images.build_argv(IMAGES["netguard"], BuildOptions(), "b", _extra(tmp_path))
    assert "yolo-cage.extra-ca=none" in images.build_argv(IMAGES["agent"], BuildOptions(), "b", None)


def test_extra_ca_file_is_always_written_empty_when_none(tmp_path: Path) -> None:
    path = images.write_extra_ca(None, tmp_path)
    assert path == tmp_path / "ca" / "extra-ca.pem" and path.read_bytes() == b""
    images.write_extra_ca(_extra(tmp_path), tmp_path)
    assert path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_bad_options_are_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(CageError, match="no extra CA was found"):
        images.check_options(BuildOptions(extra_ca="none", runtime_extra_ca=True))
    with pytest.raises(CageError, match="unknown base mode 'cloud'"):
        images.check_options(BuildOptions(base="cloud", extra_ca="none"))
    with pytest.raises(CageError, match="not a file"):
        images.check_options(BuildOptions(extra_ca=str(tmp_path / "missing.pem")))
    assert images.check_options(BuildOptions(extra_ca="none")) is None


# -- the Dockerfiles themselves --------------------------------------------------


def _dockerfiles() -> dict[str, str]:
    return {name: spec.dockerfile.read_text() for name, spec in IMAGES.items()}


def test_no_buildkit_only_syntax() -> None:
    """Docker 20.10's classic builder must build every image."""
    for name, text in _dockerfiles().items():
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"^#\s*syntax=", text, re.MULTILINE), name
        assert "--mount" not in code, name
        assert "<<" not in code, f"{name}: heredocs need BuildKit"
        assert "--chmod" not in code and "--link" not in code, name


def test_extra_ca_stays_in_builder_stages() -> None:
    """The extra CA is copied only before the last FROM; a final stage never COPYs .build/ca.
    The one exception is the proxy's runtime-extra-ca.pem, empty unless --runtime-extra-ca."""
    for name, text in _dockerfiles().items():
        final = text[text.rindex("\nFROM ") :]
        assert ".build/ca" not in final, name
        mentions = [line for line in final.splitlines() if "extra-ca" in line and not line.startswith("#")]
        allowed = ["COPY --from=builder /tmp/build/runtime-extra-ca.pem /usr/local/share/yolo-cage/runtime-extra-ca.pem"]
        assert mentions == (allowed if name == "proxy" else []), name


def test_final_stages_run_as_documented_users() -> None:
    expected = {"agent": "1000:1000", "proxy": "10001:10001", "scanner": "10002:10002", "sink": "0:0"}
    for name, user in expected.items():
        assert re.search(rf"^USER {user}$", _dockerfiles()[name], re.MULTILINE), name


def test_python_images_install_their_own_group() -> None:
    for name, spec in IMAGES.items():
        text = _dockerfiles()[name]
        for group in spec.groups:
            assert f".build/requirements/{group}.txt" in text and f"python-venv.sh {group}" in text, name


def test_build_context_sends_only_what_images_copy() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    for needed in ("!images/", "!addon/", "!scanner/", "!.build/"):
        assert needed in ignore
