"""Resolve a host name once, so the address checked is the address connected to.

The proxy never hands a name to the connection layer: it resolves here,
checks every address (:func:`addon.destinations.decide_addresses`), and then
connects to the chosen IP. A DNS answer that changes between the check and
the connection (DNS rebinding) therefore has nothing to change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping

from addon.addresses import IPAddress


class ResolveError(Exception):
    pass


async def resolve(host: str, port: int, overrides: Mapping[str, IPAddress], timeout_s: float) -> list[IPAddress]:
    """Every TCP address of ``host`` (canonical name), overrides first; raises :class:`ResolveError`."""
    if host in overrides:
        return [overrides[host]]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except TimeoutError:
        raise ResolveError(f"resolving {host} took longer than {timeout_s * 1000:.0f} ms") from None
    except OSError as exc:
        raise ResolveError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(seen)
