"""The sink: configuration, listeners, and the connection record every handler shares."""

from __future__ import annotations

import asyncio
import itertools
import socket
from dataclasses import dataclass, field

from .capture import Capture
from .raw import Datagrams, RawListeners
from .sockets import endpoint, listening
from .tlscerts import CertAuthority
from .web import WebListeners


@dataclass(frozen=True)
class Config:
    http_ports: tuple[int, ...] = (80,)
    https_ports: tuple[int, ...] = (443,)
    tcp_ports: tuple[int, ...] = (22, 25, 2222, 4444, 8443, 9000)
    udp_ports: tuple[int, ...] = (123, 443, 9000)
    dns_ports: tuple[int, ...] = (53,)
    icmp: bool = True
    dns_answer: str = "127.0.0.1"


@dataclass
class Sink(WebListeners, RawListeners):
    config: Config
    capture: Capture
    tls: CertAuthority = field(default=None)  # type: ignore[assignment]
    _conn_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if self.tls is None:
            self.tls = CertAuthority(self.capture.directory / ".sink-tls")

    # -- start-up ----------------------------------------------------------------

    async def start(self) -> tuple[list[str], list[str]]:
        """Open every listener; returns (listening, failed) descriptions."""
        ok: list[str] = []
        failed: list[str] = []
        plans = [(p, self._http_handler(p, tls=False)) for p in self.config.http_ports]
        plans += [(p, self._http_handler(p, tls=True)) for p in self.config.https_ports]
        plans += [(p, self._tcp_handler(p)) for p in self.config.tcp_ports]
        for port, handler in plans:
            await self._try(f"tcp/{port}", ok, failed, self._serve_tcp(port, handler))
        for port in self.config.udp_ports + self.config.dns_ports:
            await self._try(f"udp/{port}", ok, failed, self._serve_udp(port, port in self.config.dns_ports))
        if self.config.icmp:
            await self._try("icmp", ok, failed, self._serve_icmp())
        return ok, failed

    async def _try(self, name: str, ok: list[str], failed: list[str], opening) -> None:
        try:
            await opening
            ok.append(name)
        except OSError as exc:
            failed.append(f"{name}: {exc.strerror or exc}")

    async def _serve_tcp(self, port: int, handler) -> None:
        sock = listening(socket.SOCK_STREAM, port)
        ctx = self.tls.server_context() if port in self.config.https_ports else None
        await asyncio.start_server(handler, sock=sock, ssl=ctx, ssl_handshake_timeout=15 if ctx else None)

    async def _serve_udp(self, port: int, is_dns: bool) -> None:
        sock = listening(socket.SOCK_DGRAM, port)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: Datagrams(self, port, is_dns), sock=sock)

    async def _serve_icmp(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._icmp_readable, sock)

    # -- the record every TCP handler shares -------------------------------------

    def _connected(self, writer: asyncio.StreamWriter, port: int, **extra) -> dict:
        """Record the connection; its fields (conn id, addresses, TLS facts) go on every event of it."""
        ctx = {
            "conn": next(self._conn_ids),
            "src": endpoint(writer.get_extra_info("peername")),
            "dst": endpoint(writer.get_extra_info("sockname")),
            **extra,
        }
        self.capture.record("connect", f"tcp/{port}", **ctx)
        return ctx
