"""HTTP/2 (h2 over TLS via ALPN, h2c with prior knowledge on port 80):
records each request and answers 200 with a small JSON body."""

from __future__ import annotations

import json
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events

from .stream import Stream

# (headers, body, stream_id) -> the response JSON
OnRequest = Callable[[list[tuple[str, str]], bytes, int], dict]


async def serve(stream: Stream, on_request: OnRequest) -> None:
    config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8", validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    await stream.send(conn.data_to_send())
    pending: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
    while data := await stream.read_some():
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                pending[event.stream_id] = ([(str(k), str(v)) for k, v in event.headers], bytearray())
            elif isinstance(event, h2.events.DataReceived):
                pending.setdefault(event.stream_id, ([], bytearray()))[1].extend(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in pending:
                headers, body = pending.pop(event.stream_id)
                payload = json.dumps(on_request(headers, bytes(body), event.stream_id)).encode()
                conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/json"),
                                                    ("content-length", str(len(payload)))])
                conn.send_data(event.stream_id, payload, end_stream=True)
            elif isinstance(event, h2.events.ConnectionTerminated):
                await stream.send(conn.data_to_send())
                return
        await stream.send(conn.data_to_send())
