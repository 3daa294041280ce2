"""State shared by the addon classes: the parsed configuration and per-connection facts.

The addon classes each own one concern (identity, destinations, rules,
scanning, upstream pinning); they meet here. ``Runtime.config`` is replaced
whole on every reconfiguration and never mutated. Per-client-connection facts
(the agent proven at CONNECT, the tunnel's target, pinned addresses) live in a
weak dictionary so they go away with the connection.

Every final decision goes through :meth:`Runtime.finish`: it records the
decision on the flow, refuses the request when it is a block, and writes the
audit line. Hooks skip flows that are already decided.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass, field

from mitmproxy import connection, http, tcp

from addon import audit
from addon.addresses import IPAddress
from addon.credentials import CompiledBinding, ValueDir
from addon.decision import Decision, Verdict, error
from addon.destinations import DestinationPolicy
from addon.gitsmart import GitRules
from addon.hostnames import Host
from addon.identity import RegistryFile
from addon.mitm.responses import refusal
from addon.policy import Policy
from addon.rules import RuleSet, path_only
from addon.scanclient import ScannerClient
from addon.scanning import Finding

log = logging.getLogger("yolo_cage")

DECISION = "yolo_cage.decision"
TARGET = "yolo_cage.target"  # the destination's Host, once the destination gate parsed it
CREDENTIALS = "yolo_cage.credentials"  # binding names used by the request (set by addon.mitm.credentials)
PLACEHOLDERS = "yolo_cage.placeholders"  # bindings whose own placeholder was in the body, harmlessly
WS_PLACEHOLDERS = "yolo_cage.ws_placeholders"  # (message index, bindings): the same for a WebSocket message
AGENT = "yolo_cage.agent"
SCAN = "yolo_cage.scan"
INTERNAL = "yolo_cage.internal"
HEALTHZ = "yolo_cage.healthz"  # a healthcheck the proxy answered itself: its audit lines are aggregated


@dataclass(frozen=True, slots=True)
class Config:
    policy: Policy
    policy_path: str
    destinations: DestinationPolicy
    rules: RuleSet
    registry: RegistryFile | None  # None: identity not enforced (said loudly at startup)
    scanner: ScannerClient
    audit: audit.AuditLog
    bindings: tuple[CompiledBinding, ...] = ()
    credential_values: ValueDir | None = None  # None: no credentials directory configured
    git: GitRules = GitRules()


@dataclass(frozen=True, slots=True)
class Pin:
    """An approved upstream: the address to connect to and the name to present (SNI)."""

    address: IPAddress
    port: int
    name: str  # canonical host name, or the IP text for IP literals
    text: str = field(init=False)  # str(address): every request on a kept-alive connection needs it twice

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", str(self.address))  # derived, so it cannot disagree with address


@dataclass(slots=True)
class ClientState:
    agent: str | None = None
    authenticated: bool = False  # proven at CONNECT: holds for every request in the tunnel
    tunnel: Host | None = None
    tunnel_port: int = 0
    internal: bool = False  # the tunnel leads to yolo-cage.internal (answered locally)
    pins: dict[tuple[str, int], Pin] = field(default_factory=dict)  # (name, port) -> pin
    approved: dict[tuple[str, int], Pin] = field(default_factory=dict)  # (ip text, port) -> pin
    raw_denied: bool = False
    # Plain HTTP sends its credential with every request: (registry, header, agent) of the last one proven here.
    proven: tuple[object, str, str] | None = None

    def pin(self, pin: Pin) -> None:
        self.pins[(pin.name, pin.port)] = pin
        self.approved[(pin.text, pin.port)] = pin


@dataclass(frozen=True, slots=True)
class ScanInfo:
    mode: str
    findings: tuple[Finding, ...] = ()
    scan_ms: float | None = None
    scanned: bool = False


_NO_SCAN = ScanInfo(mode="")


class Runtime:
    def __init__(self) -> None:
        self.config: Config | None = None
        self._clients: weakref.WeakKeyDictionary[connection.Client, ClientState] = weakref.WeakKeyDictionary()
        self.healthchecks = audit.Repeats()

    def client(self, conn: connection.Client) -> ClientState:
        state = self._clients.get(conn)
        if state is None:
            state = self._clients[conn] = ClientState()
        return state

    def require_config(self) -> Config:
        if self.config is None:
            raise RuntimeError("the yolo-cage addon is not configured yet")
        return self.config

    # --- flows -------------------------------------------------------------------

    @staticmethod
    def decided(flow: http.HTTPFlow) -> bool:
        return DECISION in flow.metadata

    def finish(
        self, flow: http.HTTPFlow, decision: Decision, *, kind: str | None = None, address: str = "", respond: bool = True
    ) -> None:
        """Record the final decision for ``flow``; refuse it unless allowed; write the audit line."""
        if self.decided(flow):
            return
        flow.metadata[DECISION] = decision
        if _unsafe(decision):
            _warn_unsafe(decision, flow.request.pretty_host, flow.id)
        if respond and not decision.allowed:
            flow.response = refusal(decision, flow.id)
        self._audit(flow, decision, kind or ("connect" if flow.request.method == "CONNECT" else "http"), address)

    def _audit(self, flow: http.HTTPFlow, decision: Decision, kind: str, address: str) -> None:
        config = self.config
        if config is None:
            log.error("no audit log configured: decision %s for %s not recorded", decision.reason, flow.id)
            return
        scan: ScanInfo = flow.metadata.get(SCAN, _NO_SCAN)
        req = flow.request
        target: Host | None = flow.metadata.get(TARGET)
        event = audit.Event(
            request_id=flow.id,
            kind=kind,
            decision=decision,
            agent=flow.metadata.get(AGENT),
            client=_client_text(flow.client_conn),
            method=req.method,
            scheme=req.scheme,
            host=target.name if target is not None else req.pretty_host,  # pretty_host parses the Host header again
            port=req.port,
            path="" if req.method == "CONNECT" else path_only(req.path),
            scanned=scan.scanned,
            findings=scan.findings,
            scan_mode=scan.mode,
            address=address,
            request_bytes=len(req.raw_content) if req.raw_content is not None else None,
            scan_ms=scan.scan_ms,
            total_ms=(time.time() - req.timestamp_start) * 1000 if req.timestamp_start else None,
            credentials=tuple(flow.metadata.get(CREDENTIALS, ())),
            placeholders=tuple(flow.metadata.get(PLACEHOLDERS, ())),
        )
        entry = audit.record(event)
        if flow.metadata.get(HEALTHZ) and decision.allowed:
            peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
            entry = self.healthchecks.admit((str(peer), kind, req.method, req.scheme, event.path), entry)
        if entry is not None:
            self.write_audit(entry, flow)

    def flush_healthchecks(self) -> None:
        """Write the healthcheck lines still owed (at shutdown)."""
        for entry in self.healthchecks.flush():
            self.write_audit(entry)

    def audit_tcp(self, flow: tcp.TCPFlow, decision: Decision) -> None:
        host, port = flow.server_conn.address or ("", 0)
        event = audit.Event(
            request_id=flow.id,
            kind="tcp",
            decision=decision,
            agent=self.client(flow.client_conn).agent,
            client=_client_text(flow.client_conn),
            host=str(host),
            port=port,
        )
        self.write_audit(audit.record(event))

    def audit_upgrade(self, flow: http.HTTPFlow, decision: Decision) -> None:
        """A raw tunnel requested by an HTTP 101 answer (recorded like any raw tunnel)."""
        req = flow.request
        event = audit.Event(
            request_id=f"{flow.id}.upgrade",
            kind="tcp",
            decision=decision,
            agent=flow.metadata.get(AGENT),
            client=_client_text(flow.client_conn),
            method=req.method,
            scheme=req.scheme,
            host=req.pretty_host,
            port=req.port,
            path=path_only(req.path),
        )
        self.write_audit(audit.record(event))

    def audit_message(self, flow: http.HTTPFlow, decision: Decision, index: int, size: int, scan: ScanInfo) -> bool:
        """Record a WebSocket message's decision; False when it could not be recorded."""
        req = flow.request
        if _unsafe(decision):
            _warn_unsafe(decision, f"{req.pretty_host} websocket", f"{flow.id}.ws{index}")
        at, tolerated = flow.metadata.get(WS_PLACEHOLDERS, (-1, ()))
        event = audit.Event(
            request_id=f"{flow.id}.ws{index}",
            kind="websocket",
            decision=decision,
            agent=flow.metadata.get(AGENT),
            client=_client_text(flow.client_conn),
            method=req.method,
            scheme=req.scheme,
            host=req.pretty_host,
            port=req.port,
            path=path_only(req.path),
            scanned=scan.scanned,
            findings=scan.findings,
            scan_mode=scan.mode,
            request_bytes=size,
            scan_ms=scan.scan_ms,
            placeholders=tuple(tolerated) if at == index else (),
        )
        return self.write_audit(audit.record(event))

    def write_audit(self, entry: dict[str, object], flow: http.HTTPFlow | None = None) -> bool:
        config = self.require_config()
        try:
            config.audit.write(entry)
            return True
        except OSError as exc:
            log.error("AUDIT LOG WRITE FAILED (%s): %s", config.audit.path, exc)
            if flow is not None and flow.response is None and flow.live:
                # An allowed request that cannot be recorded does not go out.
                decision = error("audit-unavailable", "audit", "the decision could not be recorded; blocked")
                flow.metadata[DECISION] = decision
                flow.response = refusal(decision, flow.id)
            return False


def _client_text(conn: connection.Client) -> str:
    peer = conn.peername
    if not peer:
        return ""
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _unsafe(decision: Decision) -> bool:
    """An allow that only an ``unsafe_*`` setting gave: logged loudly every time, not just audited."""
    return decision.verdict is Verdict.ALLOW and decision.reason.startswith("unsafe-")


def _warn_unsafe(decision: Decision, what: str, request_id: str) -> None:
    # Callers build ``what`` only for unsafe decisions: pretty_host re-parses the Host header
    # (about a tenth of the addon's own time per request when it was built for every decision).
    log.warning("UNSAFE: %s allowed by %s (%s) request %s", what, decision.rule, decision.reason, request_id)
