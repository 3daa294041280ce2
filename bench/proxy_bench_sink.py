"""The benchmark's upstream: a small keep-alive HTTP/1.1 server on [::] (so "localhost" works over IPv4 and IPv6).

``python bench/proxy_bench_sink.py PORT``. GET answers 2 bytes; POST reads the
body and answers its length. Kept in its own process so it never competes with
the benchmark's clients for the interpreter lock.
"""

from __future__ import annotations

import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without TCP_NODELAY, Nagle plus the
    # client's delayed ACK add 40 ms to every answer.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._answer(b"ok")

    def do_POST(self) -> None:
        remaining = int(self.headers.get("Content-Length", "0"))
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        self._answer(b"received")

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        pass


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


if __name__ == "__main__":
    DualStackServer(("::", int(sys.argv[1])), Handler).serve_forever()
