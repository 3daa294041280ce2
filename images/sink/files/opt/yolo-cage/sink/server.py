"""The sink: configuration, listeners, and the connection record every handler shares."""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
from dataclasses import dataclass, field

from .capture import Capture
from .raw import Datagrams, RawListeners
from .sockets import endpoint, listening
from .tlscerts import CertAuthority
from .web import WebListeners


TLS_PEEK_TIMEOUT = 10.0  # a client on a TLS port that sends nothing is recorded as raw TCP after this


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
    _tasks: set = field(default_factory=set)  # accept loops and their connections, kept alive

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
        if port in self.config.https_ports:
            # Not asyncio's TLS server: bytes that are not TLS (a raw tunnel
            # through the proxy's CONNECT) must be recorded, not dropped by a
            # failed handshake.
            self._tasks.add(asyncio.create_task(self._accept_tls_or_raw(sock, handler, self._tcp_handler(port))))
            return
        await asyncio.start_server(handler, sock=sock)

    async def _accept_tls_or_raw(self, sock: socket.socket, tls_handler, raw_handler) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(sock)
            task = asyncio.create_task(self._tls_or_raw(conn, tls_handler, raw_handler))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _tls_or_raw(self, conn: socket.socket, tls_handler, raw_handler) -> None:
        """Peek at the first byte: a TLS handshake record (0x16) gets TLS, anything else the raw recorder."""
        loop = asyncio.get_running_loop()
        first = await _peek(conn, TLS_PEEK_TIMEOUT)
        tls = first == b"\x16"
        reader = asyncio.StreamReader(limit=2**16)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self.tls.server_context() if tls else None,
                ssl_handshake_timeout=15 if tls else None)
        except (OSError, ssl.SSLError, TimeoutError):
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await (tls_handler if tls else raw_handler)(reader, writer)

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


async def _peek(conn: socket.socket, timeout: float) -> bytes:
    """The first byte the client sent, without consuming it (b"" if it sent nothing in time)."""
    conn.setblocking(False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            await asyncio.sleep(0.01)
        except OSError:
            return b""
    return b""
