"""A tiny authoritative DNS server: records every query, answers A and TXT.

The sink plays the attacker's name server (for example for
``exfil.attacker.test``): data smuggled in query names reaches it even when
no packet ever reaches its HTTP ports. Every name gets an answer (A: the
configured address; TXT: "yolo-cage-sink"), so a client sees success.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

QTYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV", 65: "HTTPS"}
TYPE_A, TYPE_TXT = 1, 16
TXT_ANSWER = b"yolo-cage-sink"
TTL = 5


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    qname: str
    qtype: int
    qclass: int
    question: bytes  # the question section as sent, echoed in the answer

    @property
    def qtype_name(self) -> str:
        return QTYPE_NAMES.get(self.qtype, str(self.qtype))


def parse_query(packet: bytes) -> Query:
    if len(packet) < 12:
        raise ValueError("shorter than a DNS header")
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount < 1:
        raise ValueError("no question")
    labels, pos = [], 12
    while True:
        if pos >= len(packet):
            raise ValueError("name runs past the packet")
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(packet[pos : pos + length].decode("ascii", "backslashreplace"))
        pos += length
    if pos + 4 > len(packet):
        raise ValueError("question without type and class")
    qtype, qclass = struct.unpack("!HH", packet[pos : pos + 4])
    return Query(qid, flags, ".".join(labels), qtype, qclass, packet[12 : pos + 4])


def address_for(qname: str, default: str) -> str:
    """The address a name resolves to: ``default``, except ``a-b-c-d.ip.<anything>``, which is a.b.c.d.

    The red team uses such names (like nip.io's) to make the proxy resolve an
    attacker-controlled name to a private, loopback or metadata address: the
    proxy must check the address it resolved, not only the name.
    """
    labels = qname.lower().rstrip(".").split(".")
    for first, second in zip(labels, labels[1:]):
        if second == "ip":
            try:
                return str(ipaddress.IPv4Address(first.replace("-", ".")))
            except ValueError:
                continue
    return default


def answer(query: Query, address: str) -> bytes:
    """An authoritative answer: A or TXT when asked for, otherwise no records (NOERROR)."""
    rdata = b""
    if query.qtype == TYPE_A:
        rdata = ipaddress.IPv4Address(address).packed
    elif query.qtype == TYPE_TXT:
        rdata = bytes([len(TXT_ANSWER)]) + TXT_ANSWER
    # QR, AA, and RD copied from the query; RCODE 0.
    flags = 0x8000 | 0x0400 | (query.flags & 0x0100)
    header = struct.pack("!HHHHHH", query.id, flags, 1, 1 if rdata else 0, 0, 0)
    body = query.question
    if rdata:
        # The answer's name is a pointer to the question's name at offset 12.
        body += struct.pack("!HHHIH", 0xC00C, query.qtype, 1, TTL, len(rdata)) + rdata
    return header + body
