"""Host isolation: an internal Docker network still reaches the Docker host.

A container on an ``internal: true`` bridge has no route out, but the bridge's
gateway address belongs to the host, and so do every other address of the
host (docker0, the egress bridge, the LAN address): a service listening on
0.0.0.0 there answers the agent. Three ways to close that, best first:

- ``gateway``: the engine's isolated gateway mode (Docker >= 28): the internal
  bridges get no host address at all (``com.docker.network.bridge.gateway_mode_ipv4``
  / ``_ipv6`` = ``isolated``);
- ``firewall``: the ``netguard`` service drops INPUT from every cage bridge
  (deterministic bridge names, an interface wildcard) in iptables and ip6tables;
- ``none``: only when the settings say ``unsafe_allow_host_access: true``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from kit.errors import CageError
from kit.settings import Settings

COMPOSE_DIR = Path(__file__).resolve().parent.parent / "compose"
GATEWAY_MODE_MIN = (28, 0)
GATEWAY_OPTIONS = {
    "com.docker.network.bridge.gateway_mode_ipv4": "isolated",
    "com.docker.network.bridge.gateway_mode_ipv6": "isolated",
}
# Linux interface names are at most 15 characters: "yc" + 8 hex + "-" + 4.
BRIDGE_NAME_MAX = 15
ROLE_SUFFIX_LEN = 4


@dataclass(frozen=True)
class Engine:
    """What the choice depends on, read from `docker info` / `docker version`."""

    version: str
    os_type: str = "linux"
    operating_system: str = ""
    rootless: bool = False

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return parse_version(self.version)

    @property
    def desktop(self) -> bool:
        return "docker desktop" in self.operating_system.lower()


@dataclass(frozen=True)
class Isolation:
    mode: str  # gateway | firewall | none
    reason: str
    overlay: Path | None  # compose overlay for this mode (None: compose.yaml as is)

    @property
    def uses_netguard(self) -> bool:
        return self.mode == "firewall"


def parse_version(text: str) -> tuple[int, ...]:
    """'28.0.1' -> (28, 0, 1); '20.10.24+dfsg1' -> (20, 10, 24)."""
    nums = re.findall(r"\d+", text.split("+")[0].split("-")[0])
    if not nums:
        raise CageError(f"cannot read the Docker engine version {text!r}")
    return tuple(int(n) for n in nums[:3])


def gateway_mode_supported(engine: Engine) -> bool:
    return engine.os_type == "linux" and engine.version_tuple >= GATEWAY_MODE_MIN


def firewall_unsupported_reason(engine: Engine) -> str | None:
    """Why netguard's rules could not protect this engine's host, or None when they can."""
    if engine.os_type != "linux":
        return f"the engine runs {engine.os_type} containers"
    if engine.desktop:
        return "Docker Desktop's host network is its VM, not this machine"
    if engine.rootless:
        return "a rootless engine's host network is its own namespace"
    return None


def choose(settings: Settings, engine: Engine) -> Isolation:
    """The host-isolation mode for this engine, or a CageError saying what would make it safe."""
    wanted = settings.backends.compose.host_isolation
    gateway_ok = gateway_mode_supported(engine)
    firewall_why_not = firewall_unsupported_reason(engine)
    if wanted in ("auto", "gateway") and gateway_ok:
        return Isolation("gateway", f"Docker {engine.version} has the isolated gateway mode", _overlay("gateway"))
    if wanted == "gateway":
        raise CageError(
            f"backends.compose.host_isolation is 'gateway' but Docker {engine.version} has no isolated "
            f"gateway mode (needs >= {'.'.join(map(str, GATEWAY_MODE_MIN))}); use 'auto' or 'firewall'"
        )
    if firewall_why_not is None:
        why = "forced by the settings" if wanted == "firewall" else f"Docker {engine.version} has no isolated gateway mode"
        return Isolation("firewall", f"netguard firewall rules ({why})", None)
    if settings.unsafe_allow_host_access:
        return Isolation(
            "none", f"UNSAFE: agents can reach services on the Docker host ({firewall_why_not})", _overlay("none")
        )
    raise CageError(
        f"cannot isolate the cage from the Docker host: no isolated gateway mode in Docker {engine.version} "
        f"and no firewall ({firewall_why_not}). Upgrade the engine to >= 28, or accept the risk with "
        "`unsafe_allow_host_access: true` in the settings."
    )


def _overlay(mode: str) -> Path:
    return COMPOSE_DIR / {"gateway": "host-gateway.yaml", "none": "host-unprotected.yaml"}[mode]


def bridge_prefix(project: str) -> str:
    """``yc`` + 8 hex of the project's SHA-256 + ``-``: every cage bridge name starts with it."""
    return f"yc{hashlib.sha256(project.encode()).hexdigest()[:8]}-"


def agent_bridge_suffix(agent: str) -> str:
    """Four characters naming an extra agent's bridge (``cage``, ``scan``, ``egrs`` are taken)."""
    return hashlib.sha256(f"agent:{agent}".encode()).hexdigest()[:ROLE_SUFFIX_LEN]


def bridge_name(project: str, suffix: str) -> str:
    name = bridge_prefix(project) + suffix
    if len(name) > BRIDGE_NAME_MAX:
        raise CageError(f"bridge name {name!r} is longer than {BRIDGE_NAME_MAX} characters")
    return name


def netguard_chain(project: str) -> str:
    """The iptables chain netguard owns (same derivation as the script in compose.yaml)."""
    return "YC-" + bridge_prefix(project).rstrip("-")
