"""Test harness: a cage addon chain under mitmproxy's own test helpers (taddons, tflow): no sockets, no Docker.

The scanner is replaced by :class:`FakeScanner`, a double that records every
call and answers what the test says; the real scanner is exercised by the
live tests in tests/integration/test_proxy_live.py.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mitmproxy import connection, exceptions, http
from mitmproxy.addons import proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from addon.identity import hash_token
from addon.mitm.chain import YoloCage, make_addons
from addon.mitm.runtime import Runtime
from addon.scanning import Outcome, ScanResult

HEAD = "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"
# Names resolve without DNS: example.com to a public address, the sink names to loopback.
POLICY = HEAD + (
    "destinations:\n"
    "  unsafe_host_overrides: {example.com: 93.184.216.34, api.github.com: 140.82.112.6, sink.test: 127.0.0.1,\n"
    "                          llm.example: 93.184.216.35, quiet.example: 93.184.216.36}\n"
    "scan:\n"
    "  destinations:\n"
    "    - {hosts: [llm.example], mode: report}\n"
    "    - {hosts: [quiet.example], mode: 'off'}\n"
    "  max_body_bytes: 1000\n"
)
TOKEN = "alice-proxy-token"
T = TypeVar("T")


class FakeScanner:
    url = "fake://scanner/v1/scan"

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.answer: Outcome | Callable[[dict], Outcome] = ScanResult("clean")

    def start(self, payload: bytes, deadline_s: float) -> asyncio.Future[Outcome]:
        """Like the real client: the call is made at once, the future carries the outcome."""
        call = json.loads(payload)
        self.calls.append(call)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        future.set_result(self.answer(call) if callable(self.answer) else self.answer)
        return future

    async def scan(self, payload: bytes, deadline_s: float) -> Outcome:
        return await self.start(payload, deadline_s)

    async def close(self) -> None:
        pass


def proxy_auth(agent: str = "alice", token: str = TOKEN) -> str:
    return "Basic " + base64.b64encode(f"{agent}:{token}".encode()).decode()


_OPEN: list[Cage] = []


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a test coroutine; shut down every Cage it made (their log handlers are tied to this loop)."""

    async def main() -> T:
        try:
            return await coro
        finally:
            while _OPEN:
                await _OPEN.pop().ctx.master.done()

    return asyncio.run(main())


class EntryScript:
    """Stands in for addon/entry.py's module as mitmproxy's script loader registers it: its child is the one
    YoloCage addon, which runs the parts."""

    def __init__(self) -> None:
        self.parts = make_addons()
        self.addons = [YoloCage(self.parts)]


class Cage:
    """The addon chain, configured from files in ``tmp``, driven hook by hook like mitmproxy does."""

    def __init__(self, tmp: Path, policy: str = POLICY, agents: dict | None = None):
        self.tmp = tmp
        self.policy_path = tmp / "policy.yaml"
        self.policy_path.write_text(policy)
        self.agents_path = tmp / "agents.json"
        if agents is None:
            agents = {"alice": {"token_sha256": hash_token(TOKEN)}}
        self.agents_path.write_text(json.dumps(agents))
        self.audit_path = tmp / "audit.jsonl"
        self.scanner = FakeScanner()
        script = EntryScript()
        self.parts = script.parts
        self.runtime: Runtime = self.parts[0].runtime  # type: ignore[attr-defined]
        # Proxyserver declares connection_strategy, stream_large_bodies, ...: the chain checks them.
        self.ctx = taddons.context(proxyserver.Proxyserver(), script)
        _OPEN.append(self)

    def options(self, **extra: object) -> dict[str, object]:
        return {
            "connection_strategy": "lazy",
            "yolo_cage_policy": str(self.policy_path),
            "yolo_cage_agents": str(self.agents_path),
            "yolo_cage_scanner": "http://127.0.0.1:9",
            "yolo_cage_audit_log": str(self.audit_path),
            **extra,
        }

    def set_options(self, **extra: object) -> None:
        """Built-in options first, then ours (as mitmdump applies --set before loading the script)."""
        opts = self.options(**extra)
        self.ctx.options.update(**{k: v for k, v in opts.items() if not k.startswith("yolo_cage_")})
        self.ctx.options.update(**{k: v for k, v in opts.items() if k.startswith("yolo_cage_")})

    def option_error(self, **extra: object) -> str:
        """The OptionsError the chain raises for these options (the first one, before rollback)."""
        seen: list[Exception] = []

        def record(exc: Exception) -> None:
            seen.append(exc)

        self._keep = record  # the signal holds a weak reference only
        self.ctx.options.errored.connect(record)
        with pytest.raises(exceptions.OptionsError):
            self.set_options(**extra)
        return str(seen[0])

    def configure(self, **extra: object) -> Cage:
        self.set_options(**extra)
        self.runtime.config = dataclasses.replace(self.runtime.require_config(), scanner=self.scanner)  # type: ignore[arg-type]
        return self

    async def hook(self, name: str, obj: object) -> None:
        from mitmproxy import hooks

        await self.ctx.master.addons.handle_lifecycle(hooks.all_hooks[name](obj))

    async def connect(self, host: str, port: int = 443, *, client: connection.Client | None = None, auth: str | None = "default") -> http.HTTPFlow:
        headers = [(b"Host", f"{host}:{port}".encode())]
        if auth:
            headers.append((b"Proxy-Authorization", (proxy_auth() if auth == "default" else auth).encode()))
        req = tutils.treq(method=b"CONNECT", host=host, port=port, scheme=b"", authority=f"{host}:{port}".encode(),
                          path=b"", headers=http.Headers(headers), content=b"")
        flow = tflow.tflow(client_conn=client or new_client(), req=req)
        await self.hook("http_connect", flow)
        return flow

    async def send(self, flow: http.HTTPFlow) -> http.HTTPFlow:
        await self.hook("requestheaders", flow)
        await self.hook("request", flow)
        return flow

    def audit(self) -> list[dict]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


def new_client(tls: bool = False, sni: str | None = None, peer: str = "10.0.0.2") -> connection.Client:
    client = tflow.tclient_conn()
    client.peername = (peer, 40000)
    client.tls = tls
    client.sni = sni
    client.proxy_mode = ProxyMode.parse("regular")
    return client


def request(
    host: str = "example.com",
    port: int = 80,
    *,
    scheme: str = "http",
    method: str = "GET",
    path: str = "/p",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    client: connection.Client | None = None,
    auth: str | None = "default",
    host_header: str | None = "default",
) -> http.HTTPFlow:
    fields = list(headers or [])
    if host_header:
        fields.insert(0, (b"Host", (host if host_header == "default" else host_header).encode()))
    if auth:
        fields.append((b"Proxy-Authorization", (proxy_auth() if auth == "default" else auth).encode()))
    if body:
        fields.append((b"Content-Length", str(len(body)).encode()))
    req = tutils.treq(host=host, port=port, scheme=scheme.encode(), method=method.encode(), authority=b"",
                      path=path.encode(), headers=http.Headers(fields), content=body)
    return tflow.tflow(client_conn=client or new_client(), req=req)


def refusal(flow: http.HTTPFlow) -> dict | None:
    if flow.response is None:
        return None
    body = json.loads(flow.response.content or b"{}")
    assert flow.response.headers.get("X-Yolo-Cage-Block") == body["reason"]
    assert body["blocked"] is True and body["request_id"] == flow.id
    return {"status": flow.response.status_code, **body}


