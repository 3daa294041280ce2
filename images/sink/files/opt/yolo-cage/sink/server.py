"""The sink's listeners: every protocol handler records into one Capture."""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
import struct
from dataclasses import dataclass, field

from . import dns, gitsmart, h2server, http1, websocket
from .capture import Capture, b64, text_or_none
from .sockets import endpoint, listening
from .stream import Stream, StreamClosed
from .tlscerts import CertAuthority

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TCP_IDLE = 30.0  # raw TCP: stop reading a silent connection after this long
TCP_MAX = 16 * 1024 * 1024
BANNERS = {22: b"SSH-2.0-OpenSSH_9.6 yolo-cage-sink\r\n", 2222: b"SSH-2.0-OpenSSH_9.6 yolo-cage-sink\r\n"}
SMTP_PORTS = (25, 587)


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
class Sink:
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
        await loop.create_datagram_endpoint(lambda: _Datagrams(self, port, is_dns), sock=sock)

    async def _serve_icmp(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._icmp_readable, sock)

    # -- TCP: HTTP(S), WebSocket, HTTP/2, git ------------------------------------

    def _connected(self, writer: asyncio.StreamWriter, port: int, **extra) -> dict:
        ctx = {
            "conn": next(self._conn_ids),
            "src": endpoint(writer.get_extra_info("peername")),
            "dst": endpoint(writer.get_extra_info("sockname")),
        }
        self.capture.record("connect", f"tcp/{port}", **ctx, **extra)
        return ctx

    def _http_handler(self, port: int, *, tls: bool):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sslobj = writer.get_extra_info("ssl_object")
            tls_info = {"sni": getattr(sslobj, "sink_sni", None), "alpn": sslobj.selected_alpn_protocol()} if sslobj else {}
            ctx = self._connected(writer, port, scheme="https" if tls else "http", **tls_info)
            stream = Stream(reader, writer)
            try:
                if tls_info.get("alpn") == "h2" or (not tls and await _is_h2c(stream)):
                    await h2server.serve(stream, self._h2_recorder(port, ctx, "https" if tls else "http"))
                else:
                    await self._http1(stream, port, ctx, "https" if tls else "http")
            except (StreamClosed, ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                pass
            except Exception as exc:  # noqa: BLE001 - a bad client must not stop the sink
                self.capture.record("error", f"tcp/{port}", **ctx, error=repr(exc))
            finally:
                await _close(writer)

        return handle

    async def _http1(self, stream: Stream, port: int, ctx: dict, scheme: str) -> None:
        while True:
            mark = stream.mark()
            try:
                request = await http1.read_request(stream)
            except ValueError as exc:
                rest = stream.raw_since(mark) + bytes(stream.buffer)
                self.capture.record("unparsed", f"tcp/{port}", **ctx, error=str(exc), raw_b64=b64(rest))
                return
            if request is None:
                return
            event = self._record_http(request, port, ctx, scheme)
            if request.header("upgrade").lower() == "websocket":
                await self._websocket(stream, request, port, ctx)
                return
            await stream.send(self._http_reply(request, port, ctx, event))
            if not request.keep_alive:
                return

    def _record_http(self, request: http1.Request, port: int, ctx: dict, scheme: str) -> dict:
        return self.capture.record(
            "http",
            f"tcp/{port}",
            **ctx,
            scheme=scheme,
            http_version=request.version.removeprefix("HTTP/"),
            method=request.method,
            target=request.target,
            host=request.header("host"),
            headers=[list(h) for h in request.headers],
            body_size=len(request.body),
            body_b64=b64(request.body),
            body_text=text_or_none(request.body),
            raw_b64=b64(request.raw),
        )

    def _http_reply(self, request: http1.Request, port: int, ctx: dict, event: dict) -> bytes:
        service = _git_service(request.query)
        if request.method == "GET" and request.path.endswith("/info/refs") and service:
            body = gitsmart.advertisement(service)
            return http1.response(200, body, f"application/x-{service}-advertisement", [("Cache-Control", "no-cache")])
        if request.method == "POST" and request.path.endswith("/git-receive-pack"):
            updates, caps, pack = gitsmart.parse_push(request.body, request.header("content-encoding"))
            self.capture.record(
                "git-push",
                f"tcp/{port}",
                **ctx,
                host=request.header("host"),
                repo=request.path.removesuffix("/git-receive-pack"),
                updates=[{"old": u.old, "new": u.new, "ref": u.ref} for u in updates],
                capabilities=caps,
                pack_size=len(pack),
                pack_b64=b64(pack),
            )
            return http1.response(200, gitsmart.report_status(updates), "application/x-git-receive-pack-result")
        return http1.json_response({"sink": "ok", "seq": event["seq"]})

    async def _websocket(self, stream: Stream, request: http1.Request, port: int, ctx: dict) -> None:
        await stream.send(websocket.handshake_response(request.header("sec-websocket-key")))
        where = {"host": request.header("host"), "target": request.target}
        while True:
            opcode, payload = await websocket.read_message(stream)
            self.capture.record(
                "websocket",
                f"tcp/{port}",
                **ctx,
                **where,
                opcode=opcode,
                data_b64=b64(payload),
                text=text_or_none(payload) if opcode == websocket.OP_TEXT else None,
            )
            if opcode == websocket.OP_CLOSE:
                await stream.send(websocket.encode_frame(websocket.OP_CLOSE, payload[:2]))
                return
            reply_op = websocket.OP_PONG if opcode == websocket.OP_PING else opcode
            if opcode in (websocket.OP_TEXT, websocket.OP_BINARY, websocket.OP_PING):
                await stream.send(websocket.encode_frame(reply_op, payload))

    def _h2_recorder(self, port: int, ctx: dict, scheme: str):
        def on_request(headers: list[tuple[str, str]], body: bytes, stream_id: int) -> dict:
            pseudo = {k: v for k, v in headers if k.startswith(":")}
            event = self.capture.record(
                "http",
                f"tcp/{port}",
                **ctx,
                scheme=scheme,
                http_version="2",
                stream=stream_id,
                method=pseudo.get(":method", ""),
                target=pseudo.get(":path", ""),
                host=pseudo.get(":authority", ""),
                headers=[[k, v] for k, v in headers],
                body_size=len(body),
                body_b64=b64(body),
                body_text=text_or_none(body),
            )
            return {"sink": "ok", "seq": event["seq"]}

        return on_request

    # -- raw TCP ------------------------------------------------------------------

    def _tcp_handler(self, port: int):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ctx = self._connected(writer, port)
            stream = Stream(reader, writer)
            try:
                if port in BANNERS:
                    await stream.send(BANNERS[port])
                if port in SMTP_PORTS:
                    await self._smtp(stream, port, ctx)
                else:
                    await self._raw(stream, port, ctx)
            except (ConnectionError, TimeoutError, StreamClosed):
                pass
            finally:
                await _close(writer)

        return handle

    async def _raw(self, stream: Stream, port: int, ctx: dict) -> None:
        offset = 0
        while offset < TCP_MAX and (chunk := await stream.read_some(timeout=TCP_IDLE)):
            self.capture.record("tcp", f"tcp/{port}", **ctx, offset=offset, data_b64=b64(chunk), text=text_or_none(chunk))
            offset += len(chunk)

    async def _smtp(self, stream: Stream, port: int, ctx: dict) -> None:
        """Enough SMTP for a client to hand over a whole message (recorded line by line)."""
        await stream.send(b"220 sink ESMTP yolo-cage\r\n")
        in_data = False
        while True:
            line = await asyncio.wait_for(stream.read_until(b"\n"), TCP_IDLE)
            self.capture.record("smtp", f"tcp/{port}", **ctx, line_b64=b64(line), text=text_or_none(line))
            command = line.strip().upper()
            if in_data:
                if command == b".":
                    in_data = False
                    await stream.send(b"250 OK queued\r\n")
                continue
            if command.startswith(b"DATA"):
                in_data = True
                await stream.send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif command.startswith(b"QUIT"):
                await stream.send(b"221 Bye\r\n")
                return
            else:
                await stream.send(b"250 OK\r\n")

    # -- UDP, DNS, ICMP -----------------------------------------------------------

    def datagram(self, port: int, is_dns: bool, data: bytes, addr: tuple) -> bytes | None:
        """Record one datagram; the reply to send back, if any (DNS only)."""
        src = endpoint(addr)
        if not is_dns:
            self.capture.record("udp", f"udp/{port}", src=src, data_b64=b64(data), text=text_or_none(data))
            return None
        try:
            query = dns.parse_query(data)
        except ValueError as exc:
            self.capture.record("udp", f"udp/{port}", src=src, data_b64=b64(data), error=f"not a DNS query: {exc}")
            return None
        self.capture.record(
            "dns", f"udp/{port}", src=src, id=query.id, qname=query.qname, qtype=query.qtype_name, raw_b64=b64(data)
        )
        return dns.answer(query, dns.address_for(query.qname, self.config.dns_answer))

    def _icmp_readable(self, sock: socket.socket) -> None:
        try:
            packet, addr = sock.recvfrom(65535)
        except BlockingIOError:
            return
        event = parse_icmp(packet)
        if event is not None:
            self.capture.record("icmp", "icmp", src=addr[0], **event)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, sink: Sink, port: int, is_dns: bool):
        self.sink, self.port, self.is_dns = sink, port, is_dns
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = self.sink.datagram(self.port, self.is_dns, data, addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def parse_icmp(packet: bytes) -> dict | None:
    """An ICMP message from a raw IPv4 packet (the kernel includes the IP header)."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 8:
        return None
    kind, code = icmp[0], icmp[1]
    ident, seq = struct.unpack("!HH", icmp[4:8])
    return {"type": kind, "code": code, "echo_id": ident, "echo_seq": seq, "data_b64": b64(icmp[8:])}


def _git_service(query: str) -> str | None:
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "service" and value in ("git-receive-pack", "git-upload-pack"):
            return value
    return None


async def _is_h2c(stream: Stream) -> bool:
    """Does the client open with the HTTP/2 preface (h2c with prior knowledge)?"""
    while len(stream.buffer) < len(H2_PREFACE) and H2_PREFACE.startswith(bytes(stream.buffer)):
        if not await stream.fill():
            return False
    return bytes(stream.buffer[: len(H2_PREFACE)]) == H2_PREFACE


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
        pass
