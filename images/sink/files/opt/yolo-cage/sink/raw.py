"""The sink's raw listeners: TCP (banners, SMTP), UDP, DNS and ICMP."""

from __future__ import annotations

import asyncio
import socket
import struct

from . import dns
from .capture import Capture, b64, text_or_none
from .sockets import endpoint
from .stream import Stream, StreamClosed
from .web import close_quietly

TCP_IDLE = 30.0  # raw TCP: stop reading a silent connection after this long
TCP_MAX = 16 * 1024 * 1024
BANNERS = {22: b"SSH-2.0-OpenSSH_9.6 yolo-cage-sink\r\n", 2222: b"SSH-2.0-OpenSSH_9.6 yolo-cage-sink\r\n"}
SMTP_PORTS = (25, 587)


class RawListeners:
    """Mixed into Sink, which provides ``capture`` and ``_connected``."""

    capture: Capture

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
                await close_quietly(writer)

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


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self, sink: RawListeners, port: int, is_dns: bool):
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
