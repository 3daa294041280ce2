"""WebSocket (RFC 6455), server side: the handshake and a frame reader that
records every message and echoes it back."""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from .stream import Stream

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 16 * 1024 * 1024


def accept_key(client_key: str) -> str:
    digest = hashlib.sha1((client_key.strip() + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake_response(client_key: str) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(client_key)}\r\n\r\n"
    ).encode("ascii")


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes


async def read_frame(stream: Stream) -> Frame:
    first, second = await stream.read_exactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await stream.read_exactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await stream.read_exactly(8))
    if length > MAX_MESSAGE:
        raise ValueError(f"frame of {length} bytes")
    mask = await stream.read_exactly(4) if second & 0x80 else b""
    payload = await stream.read_exactly(length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return Frame(bool(first & 0x80), first & 0x0F, payload)


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A server frame (unmasked, final)."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


async def read_message(stream: Stream) -> tuple[int, bytes]:
    """The next complete message (continuations joined); control frames are returned as they come."""
    frame = await read_frame(stream)
    if frame.opcode >= OP_CLOSE or frame.fin:
        return frame.opcode, frame.payload
    opcode, parts = frame.opcode, [frame.payload]
    while True:
        frame = await read_frame(stream)
        if frame.opcode != OP_CONT:
            raise ValueError("interleaved frame inside a fragmented message")
        parts.append(frame.payload)
        if sum(map(len, parts)) > MAX_MESSAGE:
            raise ValueError("message too large")
        if frame.fin:
            return opcode, b"".join(parts)
