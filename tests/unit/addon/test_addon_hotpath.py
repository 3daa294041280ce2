"""The per-request path stays lean without losing a check: how the chain is registered, what is computed lazily."""

from __future__ import annotations

import inspect
import ipaddress
import runpy
from pathlib import Path

import pytest
from addon_harness import POLICY, request, run
from mitmproxy import http

from addon.mitm.chain import YoloCage, make_addons
from addon.mitm.runtime import Pin
from addon.scanning import ScanFailure

ROOT = Path(__file__).resolve().parents[3]


def test_the_entry_point_holds_the_chain_in_order_with_one_shared_state() -> None:
    entry = runpy.run_path(str(ROOT / "addon" / "entry.py"))
    [cage] = entry["addons"]  # mitmproxy's script loader registers the module: this is its one child
    assert isinstance(cage, YoloCage) and not hasattr(cage, "addons")  # mitmproxy walks no children of its own
    assert [type(a) for a in cage.parts] == [type(a) for a in make_addons()]
    assert len({id(a.runtime) for a in cage.parts if hasattr(a, "runtime")}) == 1


def test_each_hook_runs_every_part_that_has_it_in_chain_order() -> None:
    parts = make_addons()
    cage = YoloCage(parts)
    for name in ("requestheaders", "request", "http_connect", "websocket_message", "load", "configure", "error"):
        expected = [type(p).__name__ for p in parts if hasattr(p, name)]
        assert expected, name
        called: list[str] = []
        for p in parts:
            if hasattr(p, name):
                setattr(p, name, (lambda n: lambda *a: called.append(n))(type(p).__name__))
        getattr(YoloCage(parts), name)(object())
        assert called == expected, name
    assert not hasattr(cage, "update") and not hasattr(cage, "client_connected")  # no part has them: mitmproxy skips us
    assert inspect.iscoroutinefunction(cage.request) and not inspect.iscoroutinefunction(cage.load)  # load is called sync


def test_a_part_method_that_is_no_hook_stops_the_proxy_at_startup() -> None:
    class Misspelt:
        def request_headers(self, flow: object) -> None:  # would never be called: a check silently skipped
            pass

    with pytest.raises(TypeError, match="Misspelt.request_headers is not a mitmproxy hook"):
        YoloCage([*make_addons(), Misspelt()])


def test_every_part_sees_the_request_through_the_one_registered_addon(cage) -> None:
    """The harness nests the parts as the script loader does: a failed scan is refused, the clean control goes out pinned."""

    async def main():
        c = cage().configure()
        clean = await c.send(request(path="/clean"))
        c.scanner.answer = ScanFailure("scanner-timeout", "test")
        failed = await c.send(request(path="/failed"))
        return c, clean, failed

    c, clean, failed = run(main())
    assert clean.response is None and clean.request.data.host == "93.184.216.34"  # upstream gate ran last
    assert failed.response is not None and failed.response.status_code == 403
    assert len(c.scanner.calls) == 2 and "Proxy-Authorization" not in clean.request.headers  # identity ran first
    assert [line["decision"] for line in c.audit()] == ["allow", "error"]


def _count_pretty_host(monkeypatch) -> list[str]:
    reads: list[str] = []
    original = http.Request.pretty_host

    def counted(self: http.Request) -> str:
        value = original.fget(self)  # type: ignore[union-attr]
        reads.append(value)
        return value

    monkeypatch.setattr(http.Request, "pretty_host", property(counted))
    return reads


def test_an_ordinary_decision_does_not_parse_the_host_header_again(cage, monkeypatch) -> None:
    reads = _count_pretty_host(monkeypatch)

    async def main():
        c = cage().configure()
        return c, await c.send(request(path="/ok"))

    c, flow = run(main())
    assert flow.response is None and c.audit()[-1]["host"] == "example.com"
    assert reads == []


def test_an_unsafe_allow_still_names_its_host_in_the_loud_log_line(cage, monkeypatch, caplog) -> None:
    reads = _count_pretty_host(monkeypatch)
    policy = POLICY.replace("scan:\n", "scan:\n  unsafe_fail_open: true\n")

    async def main():
        c = cage(policy=policy).configure()
        c.scanner.answer = ScanFailure("scanner-timeout", "test")
        return await c.send(request(path="/x"))

    caplog.set_level("WARNING", logger="yolo_cage")
    flow = run(main())
    unsafe = [r.getMessage() for r in caplog.records if r.getMessage().startswith("UNSAFE:")]
    assert flow.response is None and reads == ["example.com"]
    assert len(unsafe) == 1 and unsafe[0].startswith("UNSAFE: example.com allowed by scan.unsafe_fail_open")


def test_a_pin_keeps_the_text_of_its_own_address() -> None:
    for text in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"):
        pin = Pin(ipaddress.ip_address(text), 443, "example.com")
        assert pin.text == text == str(pin.address)
