"""Network-level probes from inside the agent: TCP, UDP, ICMP, DNS, routes.

Each returns (outcome, detail, facts). Timeouts are short on purpose: a
blocked packet on an internal network is either refused at once or never
answered, and a DNS lookup there hangs ~20 s unless bounded.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
import socket
import struct
import threading
import time

from kit.redteam.inside import outcomes as o

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "TXT": 16, "AAAA": 28, "ANY": 255}
RCODES = {0: "noerror", 1: "formerr", 2: "servfail", 3: "nxdomain", 4: "notimp", 5: "refused"}


def _family(host: str) -> int:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host.split("%")[0]).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_UNSPEC


def address(host: str, timeout: float) -> str:
    """``host`` as an address; the lookup is bounded (a blocked lookup hangs ~20 s otherwise)."""
    bare = host.split("%")[0]
    try:
        ipaddress.ip_address(bare)
        return host
    except ValueError:
        pass
    outcome, detail, facts = resolve(host, timeout)
    if outcome != o.DELIVERED:
        raise (socket.timeout(detail) if outcome == o.TIMEOUT else socket.gaierror(detail))
    return str(facts["addresses"][0])  # type: ignore[index]


def connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((address(host, timeout), port), timeout=timeout)


def tcp(host: str, port: int, payload: bytes, timeout: float, read: bool = True):
    """Connect (that alone is the breach for an attack), send, read what comes back."""
    try:
        sock = connect(host, port, timeout)
    except OSError as exc:
        outcome, detail = o.from_exception(exc)
        return outcome, detail, {}
    with sock:
        facts = {"peer": sock.getpeername()[0]}
        try:
            if payload:
                sock.sendall(payload)
            reply = sock.recv(4096) if read else b""
        except OSError as exc:
            return o.DELIVERED, f"connected; then {type(exc).__name__}", facts
        facts["reply"] = reply[:200].decode("latin-1")
        return o.DELIVERED, f"connected to {facts['peer']}:{port}", facts


def udp(host: str, port: int, payload: bytes, timeout: float):
    """Send one datagram; a reply (the sink echoes) proves delivery."""
    try:
        host = address(host, timeout)
        family = _family(host)
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
        family, _, _, _, destination = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(payload, destination)
            reply, peer = sock.recvfrom(4096)
    except OSError as exc:
        outcome, detail = o.from_exception(exc)
        return outcome, detail, {}
    return o.DELIVERED, f"reply from {peer[0]}", {"reply": reply[:200].decode("latin-1")}


def icmp(host: str, payload: bytes, timeout: float):
    """An echo request carrying ``payload``, on an unprivileged ICMP socket (no NET_RAW needed)."""
    try:
        host = address(host, timeout)
    except OSError as exc:
        outcome, detail = o.from_exception(exc)
        return outcome, detail, {}
    six = _family(host) == socket.AF_INET6
    family, proto, kind = (socket.AF_INET6, socket.IPPROTO_ICMPV6, 128) if six else (socket.AF_INET, socket.IPPROTO_ICMP, 8)
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    except OSError as exc:
        if six and exc.errno == errno.EAFNOSUPPORT:
            return o.UNREACHABLE, f"no IPv6 in this kernel: {exc}", {}
        return o.ERROR, f"cannot open an ICMP socket (ping_group_range?): {exc}", {}
    # A group address (ff02::1) loops the echo back to the sender itself: its own
    # reply is no neighbour answering.
    ignore = _own_addresses() if ipaddress.ip_address(host.split("%")[0]).is_multicast else frozenset()
    with sock:
        sock.settimeout(timeout)
        packet = struct.pack("!BBHHH", kind, 0, 0, 0, 1) + payload
        try:
            # getaddrinfo gives the full socket address (an IPv6 scope such as %eth0 included).
            destination = socket.getaddrinfo(host, 0, family, socket.SOCK_DGRAM)[0][4]
            sock.sendto(packet, destination)
            reply, peer = _reply_from_another(sock, ignore, timeout)
        except OSError as exc:
            outcome, detail = o.from_exception(exc)
            return outcome, detail, {}
    return o.DELIVERED, f"echo reply from {peer[0]}", {"bytes": len(reply)}


def _reply_from_another(sock: socket.socket, ignore: frozenset[str], timeout: float):
    """The first reply whose sender is not one of ``ignore``; socket.timeout when none comes in time."""
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        reply, peer = sock.recvfrom(65535)
        if peer[0].split("%")[0] not in ignore:
            return reply, peer


def _own_addresses() -> frozenset[str]:
    """This network namespace's IPv6 addresses (/proc/net/if_inet6), loopback included."""
    out = {"::1"}
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as handle:
            for line in handle:
                out.add(str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))))
    except OSError:
        pass
    return frozenset(out)


def dns_query(qname: str, qtype: str) -> tuple[int, bytes]:
    ident = random.randrange(1 << 16)
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in qname.rstrip(".").split(".") if p)
    return ident, header + labels + b"\x00" + struct.pack("!HH", QTYPES[qtype], 1)


def system_resolver() -> str:
    try:
        with open("/etc/resolv.conf", encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1]
    except OSError:
        pass
    return "127.0.0.1"


def dns(qname: str, qtype: str, server: str, timeout: float, tcp_transport: bool = False, port: int = 53):
    """One query, sent by hand (no resolver library: nothing retries behind our back)."""
    server = system_resolver() if server == "system" else server
    ident, query = dns_query(qname, qtype)
    try:
        answer = _dns_tcp(server, port, query, timeout) if tcp_transport else _dns_udp(server, port, query, timeout)
    except OSError as exc:
        outcome, detail = o.from_exception(exc)
        return outcome, f"{server}: {detail}", {"server": server}
    if len(answer) < 12 or struct.unpack("!H", answer[:2])[0] != ident:
        return o.ERROR, f"{server}: malformed answer", {"server": server}
    flags, _, ancount = struct.unpack("!HHH", answer[2:8])
    rcode = RCODES.get(flags & 0xF, str(flags & 0xF))
    facts = {"server": server, "rcode": rcode, "answers": ancount}
    if rcode == "noerror" and ancount:
        return o.DELIVERED, f"{server} answered {ancount} record(s)", facts
    # A refusal or SERVFAIL from a local resolver that could not forward is the cage working.
    return o.DNS_FAIL, f"{server} answered {rcode} with no records", facts


def _dns_udp(server: str, port: int, query: bytes, timeout: float) -> bytes:
    with socket.socket(_family(server) if _family(server) != socket.AF_UNSPEC else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, (server, port))
        return sock.recvfrom(65535)[0]


def _dns_tcp(server: str, port: int, query: bytes, timeout: float) -> bytes:
    with connect(server, port, timeout) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        size = struct.unpack("!H", _exactly(sock, 2))[0]
        return _exactly(sock, size)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("short DNS answer over TCP")
        data += chunk
    return data


def resolve(name: str, timeout: float):
    """The C library's resolver (what every program uses), bounded by a thread."""
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["ok"] = sorted({i[4][0] for i in socket.getaddrinfo(name, None)})
        except OSError as exc:
            box["err"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return o.TIMEOUT, f"getaddrinfo({name}) still waiting after {timeout}s", {}
    if "err" in box:
        outcome, detail = o.from_exception(box["err"])  # type: ignore[arg-type]
        return outcome, detail, {}
    return o.DELIVERED, f"resolved to {box['ok']}", {"addresses": box["ok"]}


def route(destination: str):
    """Is there any route to ``destination``? Used for addresses outside this machine
    (cloud metadata): the probe decides without sending a packet there."""
    address = ipaddress.ip_address(destination)
    routes = _routes_v6() if address.version == 6 else _routes_v4()
    for network, device in routes:
        if address in network:
            return o.DELIVERED, f"route via {device} ({network})", {"device": device, "network": str(network)}
    return o.UNREACHABLE, "no route in the agent's routing table", {}


def _routes_v4() -> list[tuple[ipaddress.IPv4Network, str]]:
    out = []
    with open("/proc/net/route", encoding="ascii") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            dest = socket.inet_ntoa(struct.pack("<L", int(fields[1], 16)))
            mask = socket.inet_ntoa(struct.pack("<L", int(fields[7], 16)))
            out.append((ipaddress.ip_network(f"{dest}/{mask}", strict=False), fields[0]))
    return out


def _routes_v6() -> list[tuple[ipaddress.IPv6Network, str]]:
    if not os.path.exists("/proc/net/ipv6_route"):
        return []
    out = []
    with open("/proc/net/ipv6_route", encoding="ascii") as handle:
        for line in handle:
            fields = line.split()
            dest = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            device = fields[9]
            if device == "lo" or int(fields[8], 16) & 0x200:  # loopback and reject routes carry nothing out
                continue
            out.append((ipaddress.ip_network(f"{dest}/{int(fields[1], 16)}", strict=False), device))
    return out
