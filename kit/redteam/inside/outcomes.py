"""What a probe saw, in one vocabulary for every channel.

- ``delivered``: the target answered as itself (the sink's signature, the
  proxy's own answer for a control aimed at the proxy, a DNS answer).
- ``answered``: something answered that is neither the target's signature nor
  a block: the request got past the proxy to somebody.
- ``proxy-block``: the proxy refused it and said why (403 + ``X-Yolo-Cage-Block``).
- ``proxy-error``: the proxy answered an error without a block header (502:
  it tried the upstream).
- ``closed``: the connection was closed or reset before an answer.
- ``unreachable`` / ``refused`` / ``timeout`` / ``dns-fail``: the network said no.
- ``error``: the probe itself could not run (a missing tool, a bug).
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field

DELIVERED = "delivered"
ANSWERED = "answered"
PROXY_BLOCK = "proxy-block"
PROXY_ERROR = "proxy-error"
CLOSED = "closed"
UNREACHABLE = "unreachable"
REFUSED = "refused"
TIMEOUT = "timeout"
DNS_FAIL = "dns-fail"
ERROR = "error"

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT,
                errno.EPERM, errno.EACCES}


@dataclass
class Result:
    marker: str
    op: str
    outcome: str = ERROR
    detail: str = ""
    status: int | None = None
    block: str | None = None  # the proxy's X-Yolo-Cage-Block reason
    ms: float = 0.0
    facts: dict[str, object] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def from_exception(exc: BaseException) -> tuple[str, str]:
    """Map a socket-level exception to (outcome, detail)."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, socket.gaierror):
        return DNS_FAIL, detail
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TIMEOUT, detail
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED, detail
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, EOFError, ssl.SSLError)):
        return CLOSED, detail
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return UNREACHABLE, detail
    return ERROR, detail


class Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def ms(self) -> float:
        return round((time.monotonic() - self.start) * 1000, 1)
