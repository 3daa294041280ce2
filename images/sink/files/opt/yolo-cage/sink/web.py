"""The sink's web listeners: HTTP/1.x, WebSocket, HTTP/2 (h2 and h2c), git smart HTTP."""

from __future__ import annotations

import asyncio
import ssl

from . import gitsmart, h2server, http1, websocket
from .capture import Capture, b64, text_or_none
from .stream import Stream, StreamClosed

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class WebListeners:
    """Mixed into Sink, which provides ``capture`` and ``_connected``."""

    capture: Capture

    def _http_handler(self, port: int, *, tls: bool):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sslobj = writer.get_extra_info("ssl_object")
            tls_info = {"sni": getattr(sslobj, "sink_sni", None), "alpn": sslobj.selected_alpn_protocol()} if sslobj else {}
            ctx = self._connected(writer, port, scheme="https" if tls else "http", **tls_info)
            stream = Stream(reader, writer)
            try:
                if tls_info.get("alpn") == "h2" or (not tls and await _is_h2c(stream)):
                    await h2server.serve(stream, self._h2_recorder(port, ctx))
                else:
                    await self._http1(stream, port, ctx)
            except (StreamClosed, ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                pass
            except Exception as exc:  # noqa: BLE001 - a bad client must not stop the sink
                self.capture.record("error", f"tcp/{port}", **ctx, error=repr(exc))
            finally:
                await close_quietly(writer)

        return handle

    async def _http1(self, stream: Stream, port: int, ctx: dict) -> None:
        while True:
            mark = stream.mark()
            try:
                request = await http1.read_request(stream)
            except ValueError as exc:
                rest = stream.raw_since(mark) + bytes(stream.buffer)
                self.capture.record("unparsed", f"tcp/{port}", **ctx, error=str(exc), raw_b64=b64(rest))
                return
            if request is None:
                return
            event = self._record_http(request, port, ctx)
            if request.header("upgrade").lower() == "websocket":
                await self._websocket(stream, request, port, ctx)
                return
            await stream.send(self._http_reply(request, port, ctx, event))
            if not request.keep_alive:
                return

    def _record_http(self, request: http1.Request, port: int, ctx: dict) -> dict:
        return self.capture.record(
            "http",
            f"tcp/{port}",
            **ctx,
            http_version=request.version.removeprefix("HTTP/"),
            method=request.method,
            target=request.target,
            host=request.header("host"),
            headers=[list(h) for h in request.headers],
            body_size=len(request.body),
            body_b64=b64(request.body),
            body_text=text_or_none(request.body),
            raw_b64=b64(request.raw),
        )

    def _http_reply(self, request: http1.Request, port: int, ctx: dict, event: dict) -> bytes:
        service = git_service(request.query)
        if request.method == "GET" and request.path.endswith("/info/refs") and service:
            body = gitsmart.advertisement(service)
            return http1.response(200, body, f"application/x-{service}-advertisement", [("Cache-Control", "no-cache")])
        if request.method == "POST" and request.path.endswith("/git-receive-pack"):
            updates, caps, pack = gitsmart.parse_push(request.body, request.header("content-encoding"))
            self.capture.record(
                "git-push",
                f"tcp/{port}",
                **ctx,
                host=request.header("host"),
                repo=request.path.removesuffix("/git-receive-pack"),
                updates=[{"old": u.old, "new": u.new, "ref": u.ref} for u in updates],
                capabilities=caps,
                pack_size=len(pack),
                pack_b64=b64(pack),
            )
            return http1.response(200, gitsmart.report_status(updates), "application/x-git-receive-pack-result")
        return http1.json_response({"sink": "ok", "seq": event["seq"]})

    async def _websocket(self, stream: Stream, request: http1.Request, port: int, ctx: dict) -> None:
        await stream.send(websocket.handshake_response(request.header("sec-websocket-key")))
        where = {"host": request.header("host"), "target": request.target}
        while True:
            opcode, payload = await websocket.read_message(stream)
            self.capture.record(
                "websocket",
                f"tcp/{port}",
                **ctx,
                **where,
                opcode=opcode,
                data_b64=b64(payload),
                text=text_or_none(payload) if opcode == websocket.OP_TEXT else None,
            )
            if opcode == websocket.OP_CLOSE:
                await stream.send(websocket.encode_frame(websocket.OP_CLOSE, payload[:2]))
                return
            reply_op = websocket.OP_PONG if opcode == websocket.OP_PING else opcode
            if opcode in (websocket.OP_TEXT, websocket.OP_BINARY, websocket.OP_PING):
                await stream.send(websocket.encode_frame(reply_op, payload))

    def _h2_recorder(self, port: int, ctx: dict):
        def on_request(headers: list[tuple[str, str]], body: bytes, stream_id: int) -> dict:
            pseudo = {k: v for k, v in headers if k.startswith(":")}
            event = self.capture.record(
                "http",
                f"tcp/{port}",
                **ctx,
                http_version="2",
                stream=stream_id,
                method=pseudo.get(":method", ""),
                target=pseudo.get(":path", ""),
                host=pseudo.get(":authority", ""),
                headers=[[k, v] for k, v in headers],
                body_size=len(body),
                body_b64=b64(body),
                body_text=text_or_none(body),
            )
            return {"sink": "ok", "seq": event["seq"]}

        return on_request


def git_service(query: str) -> str | None:
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "service" and value in ("git-receive-pack", "git-upload-pack"):
            return value
    return None


async def _is_h2c(stream: Stream) -> bool:
    """Does the client open with the HTTP/2 preface (h2c with prior knowledge)?"""
    while len(stream.buffer) < len(H2_PREFACE) and H2_PREFACE.startswith(bytes(stream.buffer)):
        if not await stream.fill():
            return False
    return bytes(stream.buffer[: len(H2_PREFACE)]) == H2_PREFACE


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
        pass
