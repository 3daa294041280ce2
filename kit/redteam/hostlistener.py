"""A TCP listener on the Docker host, stand-in for every service a host runs.

An agent that reaches it (through its network's gateway or the host's other
addresses) could reach the host's real services too. It listens on all
addresses on an ephemeral port for the length of a run and records who
connected and the first bytes they sent; it answers nothing.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Connection:
    peer: str
    data: bytes


@dataclass
class HostListener:
    host: str = "0.0.0.0"
    port: int = 0
    connections: list[Connection] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> HostListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(32)
        sock.settimeout(0.2)
        self._sock, self.port = sock, sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="redteam-host-listener", daemon=True)
        self._thread.start()
        return self.port

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
            self.connections.append(Connection(peer[0], data))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
