"""The sink's protocol pieces, byte for byte (no sockets)."""

from __future__ import annotations

import asyncio
import gzip
import struct

import pytest
from sink import dns, gitsmart, http1, websocket
from sink.raw import parse_icmp
from sink.stream import Stream, StreamClosed
from sink.web import git_service


class _Reader:
    """Feeds fixed chunks like an asyncio.StreamReader, then EOF."""

    def __init__(self, *chunks: bytes):
        self.chunks = list(chunks)

    async def read(self, n: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def _stream(*chunks: bytes) -> Stream:
    return Stream(_Reader(*chunks), None)  # type: ignore[arg-type]


def run(coro):
    return asyncio.run(coro)


# -- DNS -----------------------------------------------------------------------


def _query(name: str, qtype: int, qid: int = 0xBEEF) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_dns_query_name_type_and_id_are_parsed() -> None:
    query = dns.parse_query(_query("c2VjcmV0.exfil.attacker.test", 16))
    assert (query.id, query.qname, query.qtype_name) == (0xBEEF, "c2VjcmV0.exfil.attacker.test", "TXT")


def test_dns_a_answer_is_authoritative_and_points_at_the_address() -> None:
    reply = dns.answer(dns.parse_query(_query("x.attacker.test", 1)), "10.9.8.7")
    qid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    assert (qid, qd, an) == (0xBEEF, 1, 1)
    assert flags & 0x8000 and flags & 0x0400 and flags & 0x000F == 0  # response, authoritative, NOERROR
    assert reply.endswith(bytes([10, 9, 8, 7]))


def test_dns_txt_answer_and_empty_answer_for_other_types() -> None:
    txt = dns.answer(dns.parse_query(_query("t.attacker.test", 16)), "10.0.0.1")
    assert txt.endswith(bytes([len(dns.TXT_ANSWER)]) + dns.TXT_ANSWER)
    aaaa = dns.answer(dns.parse_query(_query("t.attacker.test", 28)), "10.0.0.1")
    assert struct.unpack("!H", aaaa[6:8])[0] == 0


@pytest.mark.parametrize("packet", [b"", b"\x00" * 11, struct.pack("!HHHHHH", 1, 0, 0, 0, 0, 0), _query("a.b", 1)[:-3]])
def test_dns_garbage_is_rejected(packet: bytes) -> None:
    with pytest.raises(ValueError):
        dns.parse_query(packet)


# -- HTTP/1.1 ------------------------------------------------------------------


def test_http_request_with_length_body_split_across_reads() -> None:
    stream = _stream(b"POST /p?q=1 HTTP/1.1\r\nHost: paste", b"bin.com\r\nContent-Length: 5\r\n\r\nhel", b"lo")
    request = run(http1.read_request(stream))
    assert (request.method, request.path, request.query, request.header("HOST")) == ("POST", "/p", "q=1", "pastebin.com")
    assert request.body == b"hello" and request.keep_alive
    assert request.raw.endswith(b"\r\n\r\nhello")


def test_http_chunked_body_is_decoded_and_raw_kept() -> None:
    raw = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    request = run(http1.read_request(_stream(raw)))
    assert request.body == b"abcde" and not request.keep_alive and request.raw == raw


def test_http_two_requests_on_one_connection_then_clean_close() -> None:
    stream = _stream(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    assert run(http1.read_request(stream)).target == "/a"
    assert run(http1.read_request(stream)).target == "/b"
    assert run(http1.read_request(stream)) is None


def test_http_not_a_request_line_is_an_error() -> None:
    with pytest.raises(ValueError):
        run(http1.read_request(_stream(b"SSH-2.0-OpenSSH\r\n\r\n")))


def test_http_truncated_body_is_reported_as_closed() -> None:
    with pytest.raises(StreamClosed):
        run(http1.read_request(_stream(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")))


# -- WebSocket -------------------------------------------------------------------


def test_websocket_accept_key_matches_rfc_6455_example() -> None:
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def _client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_websocket_masked_and_fragmented_messages_are_reassembled() -> None:
    long_text = b"x" * 300
    stream = _stream(
        _client_frame(websocket.OP_TEXT, b"token=ghp_", fin=False),
        _client_frame(websocket.OP_CONT, b"abc"),
        _client_frame(websocket.OP_BINARY, long_text),
    )
    assert run(websocket.read_message(stream)) == (websocket.OP_TEXT, b"token=ghp_abc")
    assert run(websocket.read_message(stream)) == (websocket.OP_BINARY, long_text)


def test_websocket_server_frames_round_trip_unmasked() -> None:
    for size in (5, 300, 70000):
        frame = websocket.encode_frame(websocket.OP_BINARY, b"z" * size)
        parsed = run(websocket.read_frame(_stream(frame)))
        assert parsed == websocket.Frame(True, websocket.OP_BINARY, b"z" * size)


# -- git smart HTTP --------------------------------------------------------------


def test_git_advertisement_is_an_empty_repository() -> None:
    body = gitsmart.advertisement("git-receive-pack")
    assert body.startswith(b"001f# service=git-receive-pack\n0000")
    assert b"capabilities^{}\0report-status" in body and body.endswith(b"0000")


def test_git_push_commands_capabilities_and_pack_are_split() -> None:
    new = "1" * 40
    body = gitsmart.pkt_line(f"{gitsmart.ZERO_ID} {new} refs/heads/exfil\0report-status agent=git/2\n".encode())
    body += gitsmart.pkt_line(f"{gitsmart.ZERO_ID} {new} refs/tags/t\n") + gitsmart.FLUSH + b"PACK\x00\x00\x00\x02rest"
    for encoding, data in (("", body), ("gzip", gzip.compress(body))):
        updates, caps, pack = gitsmart.parse_push(data, encoding)
        assert [u.ref for u in updates] == ["refs/heads/exfil", "refs/tags/t"]
        assert updates[0].new == new and caps == ["report-status", "agent=git/2"]
        assert pack == b"PACK\x00\x00\x00\x02rest"
    report = gitsmart.report_status(updates)
    assert report == b"000eunpack ok\n0018ok refs/heads/exfil\n0013ok refs/tags/t\n0000"


def test_git_bad_pkt_lines_are_rejected() -> None:
    with pytest.raises(ValueError):
        gitsmart.parse_push(b"0003x")
    with pytest.raises(ValueError):
        gitsmart.parse_push(b"0009abcde")  # no flush


def test_git_service_comes_from_the_query() -> None:
    assert git_service("service=git-receive-pack") == "git-receive-pack"
    assert git_service("a=b&service=git-upload-pack") == "git-upload-pack"
    assert git_service("service=other") is None and git_service("") is None


# -- ICMP --------------------------------------------------------------------------


def test_icmp_echo_fields_come_from_behind_the_ip_header() -> None:
    ip_header = bytes([0x45]) + b"\x00" * 19
    icmp = struct.pack("!BBHHH", 8, 0, 0, 77, 3) + b"payload"
    assert parse_icmp(ip_header + icmp) == {"type": 8, "code": 0, "echo_id": 77, "echo_seq": 3, "data_b64": "cGF5bG9hZA=="}
    assert parse_icmp(ip_header + b"\x08\x00") is None
