"""A byte stream with its own buffer, so a handler can look at the first bytes
(is it the HTTP/2 preface? TLS?) and hand everything on to another handler."""

from __future__ import annotations

import asyncio

MAX_HEAD = 64 * 1024


class StreamClosed(Exception):
    """The peer closed before the expected bytes arrived."""


class Stream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, prefix: bytes = b""):
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray(prefix)
        self.received = bytearray(prefix)  # everything read so far, for raw capture

    async def fill(self, timeout: float | None = None) -> bool:
        chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not chunk:
            return False
        self.buffer += chunk
        self.received += chunk
        return True

    async def peek(self, n: int, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes without consuming them (fewer if the peer stops or closes)."""
        try:
            while len(self.buffer) < n and await self.fill(timeout):
                pass
        except TimeoutError:
            pass
        return bytes(self.buffer[:n])

    async def read_until(self, marker: bytes, limit: int = MAX_HEAD) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise ValueError(f"no {marker!r} within {limit} bytes")
            if not await self.fill():
                raise StreamClosed()
        return self.take(end + len(marker))

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not await self.fill():
                raise StreamClosed()
        return self.take(n)

    async def read_some(self, timeout: float | None = None) -> bytes:
        """Whatever is buffered, or the next chunk; b"" at the end of the stream."""
        if not self.buffer and not await self.fill(timeout):
            return b""
        return self.take(len(self.buffer))

    def take(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def mark(self) -> int:
        """Position in ``received`` of the next unread byte (to slice one request's raw bytes)."""
        return len(self.received) - len(self.buffer)

    def raw_since(self, mark: int) -> bytes:
        return bytes(self.received[mark : self.mark()])

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
