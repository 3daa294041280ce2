"""Listening sockets: dual-stack (IPv6 and IPv4) where the kernel allows, else IPv4."""

from __future__ import annotations

import socket


def listening(kind: int, port: int) -> socket.socket:
    """A bound socket (TCP: also listening) on every address, for SOCK_STREAM or SOCK_DGRAM."""
    try:
        sock = socket.socket(socket.AF_INET6, kind)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple = ("::", port)
    except OSError:
        sock = socket.socket(socket.AF_INET, kind)
        address = ("0.0.0.0", port)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            if sock.family != socket.AF_INET6:
                raise
            sock.close()
            return _ipv4_only(kind, port)
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


def _ipv4_only(kind: int, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(128)
    sock.setblocking(False)
    return sock


def endpoint(address: tuple | None) -> str:
    """'ip:port' with IPv4-mapped IPv6 addresses shown as IPv4."""
    if not address:
        return ""
    host = str(address[0]).removeprefix("::ffff:")
    return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
