"""kit.hostguard: which host-isolation mode an engine gets (no engine needed)."""

from __future__ import annotations

import pytest

from kit import hostguard, settings
from kit.errors import CageError
from kit.hostguard import Engine


def make(isolation: str = "auto", unsafe: bool = False) -> settings.Settings:
    return settings.from_mapping(
        {
            "apiVersion": settings.API_VERSION,
            "kind": settings.KIND,
            "backends": {"compose": {"host_isolation": isolation}},
            "unsafe_allow_host_access": unsafe,
        },
        source="test",
    )


@pytest.mark.parametrize(
    ("version", "expected"),
    [("20.10.24+dfsg1", (20, 10, 24)), ("28.0.1", (28, 0, 1)), ("29.1.0-rc.1", (29, 1, 0)), ("27.5", (27, 5))],
)
def test_parse_version(version: str, expected: tuple[int, ...]) -> None:
    assert hostguard.parse_version(version) == expected


@pytest.mark.parametrize(
    ("version", "mode"),
    [("27.5.1", "firewall"), ("20.10.24+dfsg1", "firewall"), ("28.0.0", "gateway"), ("29.0.2", "gateway")],
)
def test_auto_prefers_the_isolated_gateway_mode_when_the_engine_has_it(version: str, mode: str) -> None:
    iso = hostguard.choose(make(), Engine(version))
    assert iso.mode == mode
    assert iso.uses_netguard is (mode == "firewall")
    if mode == "gateway":
        assert iso.overlay is not None and iso.overlay.name == "host-gateway.yaml"
    else:
        assert iso.overlay is None  # compose.yaml itself is the netguard configuration


def test_gateway_forced_on_an_old_engine_is_an_error() -> None:
    with pytest.raises(CageError, match="no isolated gateway mode"):
        hostguard.choose(make("gateway"), Engine("27.0.0"))


def test_firewall_can_be_forced_on_a_new_engine() -> None:
    assert hostguard.choose(make("firewall"), Engine("28.1.0")).mode == "firewall"


@pytest.mark.parametrize(
    "engine",
    [
        Engine("27.3.1", operating_system="Docker Desktop"),
        Engine("26.0.0", rootless=True),
        Engine("27.0.0", os_type="windows"),
    ],
)
def test_no_protection_refuses_unless_unsafe_is_set(engine: Engine) -> None:
    with pytest.raises(CageError, match="unsafe_allow_host_access"):
        hostguard.choose(make(), engine)
    iso = hostguard.choose(make(unsafe=True), engine)
    assert iso.mode == "none" and "UNSAFE" in iso.reason
    assert iso.overlay is not None and iso.overlay.name == "host-unprotected.yaml"


def test_unsafe_switch_does_not_weaken_an_engine_that_can_be_protected() -> None:
    assert hostguard.choose(make(unsafe=True), Engine("20.10.24")).mode == "firewall"
    assert hostguard.choose(make(unsafe=True), Engine("28.0.0")).mode == "gateway"


def test_bridge_names_are_short_deterministic_and_share_the_prefix() -> None:
    prefix = hostguard.bridge_prefix("yolo-cage")
    assert prefix == hostguard.bridge_prefix("yolo-cage")
    assert prefix != hostguard.bridge_prefix("other")
    assert len(prefix) == 11 and prefix.startswith("yc") and prefix.endswith("-")
    for suffix in ("cage", "scan", "egrs", hostguard.agent_bridge_suffix("some-long-agent-name")):
        name = hostguard.bridge_name("a-very-long-project-name-indeed", suffix)
        assert len(name) <= 15 and name.startswith(hostguard.bridge_prefix("a-very-long-project-name-indeed"))
    with pytest.raises(CageError):
        hostguard.bridge_name("p", "toolong")


def test_chain_name_matches_the_script_derivation() -> None:
    prefix = hostguard.bridge_prefix("yolo-cage")
    assert hostguard.netguard_chain("yolo-cage") == "YC-" + prefix[:-1]
    assert len(hostguard.netguard_chain("yolo-cage")) <= 28  # iptables chain name limit
