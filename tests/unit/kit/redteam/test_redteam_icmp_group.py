"""An echo to a group address (ff02::1) loops back to the sender: its own reply is no neighbour."""

from __future__ import annotations

import socket

import pytest

from kit.redteam.inside import netprobes


class _Socket:
    def __init__(self, replies):
        self.replies = list(replies)

    def settimeout(self, _t):
        pass

    def recvfrom(self, _n):
        if not self.replies:
            raise socket.timeout("timed out")
        return self.replies.pop(0)


OWN = frozenset({"fe80::1", "::1"})


def test_the_senders_own_reply_is_skipped_and_a_neighbours_counts():
    sock = _Socket([(b"own", ("fe80::1%eth0", 0)), (b"theirs", ("fe80::ecee:eeff:feee:eeee%eth0", 0))])
    reply, peer = netprobes._reply_from_another(sock, OWN, 1.0)
    assert reply == b"theirs" and peer[0].startswith("fe80::ecee")


def test_only_its_own_reply_is_a_timeout():
    with pytest.raises(socket.timeout):
        netprobes._reply_from_another(_Socket([(b"own", ("fe80::1%eth0", 0))]), OWN, 0.2)


def test_a_unicast_reply_from_itself_still_counts():
    """The loopback control (ICMP to 127.0.0.1) is answered by the agent itself, and that is its point."""
    reply, _ = netprobes._reply_from_another(_Socket([(b"me", ("127.0.0.1", 0))]), frozenset(), 1.0)
    assert reply == b"me"


def test_own_addresses_are_read_from_the_kernel():
    own = netprobes._own_addresses()
    assert "::1" in own
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as handle:
            listed = len(handle.readlines())
    except OSError:
        listed = 0
    assert len(own) >= min(listed, 1)
