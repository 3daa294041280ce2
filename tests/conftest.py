"""Shared test set-up.

- The host's proxy and CA variables are stripped from every test (like httpx's
  test suite): tests only talk to loopback and to containers they create, and a
  stray HTTP_PROXY must never route a test through something else.
- Tests that need Docker or kind skip with a reason when the engine is absent,
  unless YOLO_CAGE_REQUIRE_DOCKER=1 (set by `invoke test` and CI), where a
  missing engine is an error: a cage test that silently skips guards nothing.
  Live kind tests are opt-in (YOLO_CAGE_KIND=1); once asked for, missing tools
  are an error too.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_STRIPPED = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "PIP_CERT",
)


@pytest.fixture(autouse=True)
def _no_host_proxy_or_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _STRIPPED:
        monkeypatch.delenv(name, raising=False)


def _docker_available() -> str | None:
    """None when a Docker engine answers, else the reason it does not."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if proc.returncode != 0:
        return "no Docker engine answers (" + (proc.stderr.strip().splitlines() or ["?"])[-1] + ")"
    return None


def _kind_available() -> str | None:
    # Opt-in: whether a registry serves kind's node image and Calico's images cannot be
    # checked without contacting it, and a test never contacts an outside host.
    missing = [tool for tool in ("kind", "kubectl") if shutil.which(tool) is None]
    if os.environ.get("YOLO_CAGE_KIND") != "1":
        here = f"; here {' and '.join(missing)} not installed" if missing else ""
        return (
            "live kind tests need Docker, kind, kubectl and a registry for kind's node image and Calico's "
            f"images; run them with YOLO_CAGE_KIND=1 where those exist (README, 'Live kind tests'){here}"
        )
    if missing:
        return f"{' and '.join(missing)} not installed"
    return _docker_available()


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: only the tests that will run count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    need_docker = [i for i in items if i.get_closest_marker("docker")]
    need_kind = [i for i in items if i.get_closest_marker("kind")]
    if need_docker:
        reason = _docker_available()
        if reason:
            if os.environ.get("YOLO_CAGE_REQUIRE_DOCKER") == "1":
                raise pytest.UsageError(
                    f"YOLO_CAGE_REQUIRE_DOCKER=1 but {reason}: {len(need_docker)} Docker tests cannot run"
                )
            for item in need_docker:
                item.add_marker(pytest.mark.skip(reason=f"Docker tests skipped: {reason}"))
    if need_kind:
        reason = _kind_available()
        if reason and os.environ.get("YOLO_CAGE_KIND") == "1":
            # Asked for and unable to run: an error, never a quiet skip.
            raise pytest.UsageError(f"YOLO_CAGE_KIND=1 but {reason}: {len(need_kind)} live kind tests cannot run")
        if reason:
            for item in need_kind:
                item.add_marker(pytest.mark.skip(reason=reason))
