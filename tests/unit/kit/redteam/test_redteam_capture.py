"""Reading the sink's capture (its format: images/sink/README.md) and attributing it to probes."""

from __future__ import annotations

import base64
import json

from kit.redteam import capture

M1, M2 = "rt-abcdef-001a0", "rt-abcdef-002c1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def lines() -> list[str]:
    raw = f"GET /rt/{M1} HTTP/1.1\r\nHost: a\r\nX-Rt-Marker: {M1}\r\n\r\n".encode()
    events = [
        {"seq": 1, "ts": 1.0, "kind": "sink-started", "listener": "sink", "listening": ["tcp/80"]},
        {"seq": 2, "ts": 1.1, "kind": "connect", "listener": "tcp/80", "conn": 7, "src": "10.0.0.2:40000", "dst": "10.0.0.9:80"},
        {"seq": 3, "ts": 1.2, "kind": "http", "listener": "tcp/80", "conn": 7, "src": "10.0.0.2:40000", "method": "GET",
         "target": f"/rt/{M1}", "headers": [["Host", "a"], ["X-Rt-Marker", M1]], "body_b64": "", "raw_b64": b64(raw)},
        {"seq": 4, "ts": 1.3, "kind": "dns", "listener": "udp/53", "src": "10.0.0.2:5353", "qname": f"x.{M2.upper()}.exfil.attacker.test",
         "qtype": "A", "raw_b64": b64(b"\x00" * 20)},
        {"seq": 5, "ts": 1.4, "kind": "tcp", "listener": "tcp/4444", "conn": 8, "src": "[::ffff:10.0.0.77]:5000",
         "data_b64": b64(b"hello"), "text": "hello"},
    ]
    return [json.dumps(e) for e in events] + ["", "not json"]


def test_parse_skips_garbage_and_keeps_order():
    events = capture.parse(lines())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]


def test_markers_are_found_in_any_field_and_shared_by_one_connection():
    events = capture.parse(lines())
    assert events[1].markers == {M1}  # the connect event, through its connection
    assert events[2].markers == {M1}
    assert events[3].markers == {M2}  # DNS names may come back upper-cased
    assert events[4].markers == set()


def test_blobs_decode_base64_fields_and_name_headers():
    events = capture.parse(lines())
    blobs = {b.where: b for b in capture.blobs(events)}
    assert blobs["http#3 raw"].data.startswith(b"GET /rt/")
    assert blobs["http#3 headers:X-Rt-Marker"].data == M1.encode()
    assert blobs["dns#4 qname"].dns and blobs["dns#4 qname"].markers == (M2,)


def test_size_counts_each_payload_once():
    events = capture.parse(lines())
    raw = len(base64.b64decode(json.loads(lines()[2])["raw_b64"]))
    assert capture.size(events) == raw + len(f"x.{M2}.exfil.attacker.test") + len(b"hello")


def test_sources_other_than_the_proxy_are_flagged():
    events = capture.parse(lines())
    foreign = capture.foreign_sources(events, {"10.0.0.2"})
    assert [(e.seq, e.src_ip) for e in foreign] == [(5, "10.0.0.77")]


def test_marker_shape():
    assert capture.marker("abcdef", 7, "a", 2) == "rt-abcdef-007a2"
    assert capture.MARKER.fullmatch(capture.marker("abcdef", 7, "c", 0))
