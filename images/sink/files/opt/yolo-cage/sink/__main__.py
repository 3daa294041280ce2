"""python -m sink: the test-only attacker sink (see images/sink/README.md).

Configuration (environment):
  SINK_CAPTURE_DIR   where events.jsonl and sink-ca.crt go (default /capture)
  SINK_HTTP_PORTS    HTTP/1.1, WebSocket, h2c, git smart HTTP (default 80)
  SINK_HTTPS_PORTS   the same over TLS, h2 by ALPN (default 443)
  SINK_TCP_PORTS     raw TCP, recorded as it comes (default 22,25,2222,4444,8443,9000)
  SINK_UDP_PORTS     raw UDP (default 123,443,9000)
  SINK_DNS_PORTS     authoritative DNS over UDP (default 53)
  SINK_ICMP          1: record ICMP through a raw socket (needs CAP_NET_RAW; default 1)
  SINK_DNS_ANSWER    the address A queries get (default: this container's own)
  SINK_ALLOW_PARTIAL 1: keep running when a listener cannot open (default: exit 1)
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from .capture import Capture
from .server import Config, Sink

CA_FILE = "sink-ca.crt"


def ports(name: str, default: str) -> tuple[int, ...]:
    raw = os.environ.get(name, default)
    return tuple(int(p) for p in raw.replace(" ", "").split(",") if p)


def own_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def config() -> Config:
    return Config(
        http_ports=ports("SINK_HTTP_PORTS", "80"),
        https_ports=ports("SINK_HTTPS_PORTS", "443"),
        tcp_ports=ports("SINK_TCP_PORTS", "22,25,2222,4444,8443,9000"),
        udp_ports=ports("SINK_UDP_PORTS", "123,443,9000"),
        dns_ports=ports("SINK_DNS_PORTS", "53"),
        icmp=os.environ.get("SINK_ICMP", "1") == "1",
        dns_answer=os.environ.get("SINK_DNS_ANSWER") or own_address(),
    )


async def main() -> int:
    directory = Path(os.environ.get("SINK_CAPTURE_DIR", "/capture"))
    sink = Sink(config(), Capture(directory))
    # Written before any listener opens: once the sink is ready the CA is there.
    tmp = directory / f".{CA_FILE}.tmp"
    tmp.write_bytes(sink.tls.ca_pem())
    tmp.replace(directory / CA_FILE)
    listening, failed = await sink.start()
    sink.capture.record("sink-started", "sink", listening=listening, failed=failed, dns_answer=sink.config.dns_answer)
    if failed:
        print("yolo-cage sink: cannot listen on " + "; ".join(failed), file=sys.stderr, flush=True)
        if os.environ.get("SINK_ALLOW_PARTIAL") != "1":
            return 1
    print(f"yolo-cage sink ready: {' '.join(listening)}", flush=True)
    await asyncio.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
