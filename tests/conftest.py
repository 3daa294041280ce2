"""Shared test set-up.

- The host's proxy and CA variables are stripped from every test (like httpx's
  test suite): tests only talk to loopback and to containers they create, and a
  stray HTTP_PROXY must never route a test through something else.
- Tests that need Docker or kind skip with a reason when the engine is absent,
  unless YOLO_CAGE_REQUIRE_DOCKER=1 (set by `invoke test` and CI), where a
  missing engine is an error: a cage test that silently skips guards nothing.
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
    if os.environ.get("YOLO_CAGE_KIND") != "1":
        return "live kind tests run only with YOLO_CAGE_KIND=1 on a machine with kind and a registry (see README)"
    if shutil.which("kind") is None:
        return "kind is not installed"
    return _docker_available()


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
        if reason:
            for item in need_kind:
                item.add_marker(pytest.mark.skip(reason=reason))
