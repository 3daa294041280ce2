"""Names and labels shared by every backend, the tests and the red team.

Tools find cage parts by label, never by guessing container names.
"""

from __future__ import annotations

import os

DEFAULT_PROJECT = "yolo-cage"

# Every container / pod carries LABEL_ROLE; agents also LABEL_AGENT.
LABEL_ROLE = "yolo-cage.role"
LABEL_AGENT = "yolo-cage.agent"
LABEL_PROJECT = "yolo-cage.project"
# Resources created by a test run carry LABEL_TEST=<run id> so they can be reaped
# (testcontainers' Ryuk reaper is not available everywhere).
LABEL_TEST = "yolo-cage.test"

ROLE_AGENT = "agent"
ROLE_PROXY = "proxy"
ROLE_SCANNER = "scanner"
ROLE_NETGUARD = "netguard"
# Short-lived, never networked: fills and reads volumes for the kit.
ROLE_HELPER = "helper"
# Test-only roles
ROLE_SINK = "sink"

PROXY_PORT = 8080
SCANNER_PORT = 8000

# The host name the proxy answers itself (never forwarded): agents use it to
# check that the path to the proxy works and that they trust the cage CA.
PROXY_SELF_HOST = "yolo-cage.internal"


def project_name() -> str:
    """The Compose project / kind namespace name; read at call time."""
    return os.environ.get("YOLO_CAGE_PROJECT", DEFAULT_PROJECT)


def image_ref(name: str, tag: str | None = None) -> str:
    """Local image reference for one of the kit's images (agent, proxy, scanner, ...)."""
    tag = tag or os.environ.get("YOLO_CAGE_IMAGE_TAG", "local")
    return f"yolo-cage/{name}:{tag}"
