"""Messages API shapes: reading requests, building replies, framing server-sent events.

Only what Claude Code uses: ``text`` and ``tool_use`` content blocks, streamed
as ``message_start``, ``content_block_start`` / ``_delta`` / ``_stop``,
``message_delta`` (stop reason, usage) and ``message_stop``, or returned as one
JSON message when ``stream`` is false. Tool input is streamed as
``input_json_delta`` pieces that only make valid JSON once joined, as the real
API does, so a client that parsed each piece on its own would break here too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

JSON_PIECE = 24  # characters of tool input per input_json_delta
TEXT_PIECE = 48  # characters of text per text_delta


class RequestError(ValueError):
    """The request is not a valid Messages API call (answered 400 invalid_request_error)."""


@dataclass(frozen=True)
class MessagesRequest:
    model: str
    messages: tuple[Mapping[str, Any], ...]
    stream: bool
    max_tokens: int
    tools: tuple[str, ...]  # tool names offered
    system_text: str
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def parse(cls, body: bytes) -> MessagesRequest:
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RequestError("body must be a JSON object")
        messages = doc.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise RequestError("messages: a list of message objects is required")
        model = doc.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("model: a string is required")
        tools = tuple(t.get("name", "") for t in doc.get("tools") or () if isinstance(t, dict))
        return cls(model, tuple(messages), doc.get("stream") is True, int(doc.get("max_tokens") or 0),
                   tools, _text_of(doc.get("system")), doc)

    def user_texts(self) -> list[str]:
        """Every text a user turn carries (prompt text and tool results), oldest first."""
        return [text for m in self.messages if m.get("role") == "user" for text in _texts(m.get("content"))]

    def tool_results(self) -> list[tuple[str, str, bool]]:
        """(tool_use_id, text, is_error) of every tool result in the conversation, oldest first."""
        out = []
        for m in self.messages:
            if m.get("role") != "user" or not isinstance(m.get("content"), list):
                continue
            for block in m["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    out.append((str(block.get("tool_use_id", "")), _text_of(block.get("content")), bool(block.get("is_error"))))
        return out

    def tool_use_ids(self) -> list[str]:
        """Ids of the tool_use blocks in the assistant turns (what the model asked for so far)."""
        return [str(b.get("id", "")) for m in self.messages if m.get("role") == "assistant"
                for b in (m.get("content") if isinstance(m.get("content"), list) else ())
                if isinstance(b, dict) and b.get("type") == "tool_use"]


def _texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                yield str(block.get("text", ""))
            elif block.get("type") == "tool_result":
                yield _text_of(block.get("content"))


def _text_of(content: Any) -> str:
    """The text of a system prompt or a tool result: a string, or text blocks joined."""
    return "\n".join(_texts(content)) if content is not None else ""


# --- replies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: Mapping[str, Any]


Block = Text | ToolUse


def estimate_tokens(value: Any) -> int:
    """A stable stand-in for a tokenizer: about four characters per token, at least one."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return max(1, len(text) // 4)


def message_id(seed: bytes) -> str:
    return "msg_yc" + hashlib.sha256(seed).hexdigest()[:22]


def stop_reason(blocks: Sequence[Block]) -> str:
    return "tool_use" if any(isinstance(b, ToolUse) for b in blocks) else "end_turn"


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def block_json(block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input)}


def message(mid: str, model: str, blocks: Sequence[Block], input_tokens: int) -> dict[str, Any]:
    """The whole reply as one JSON message (``stream: false``)."""
    content = [block_json(b) for b in blocks]
    return {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason(blocks), "stop_sequence": None,
            "usage": usage(input_tokens, estimate_tokens(content))}


def stream_events(mid: str, model: str, blocks: Sequence[Block], input_tokens: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """The same reply as the event sequence of a streamed response."""
    start = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": usage(input_tokens, 1)}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(blocks):
        yield from _block_events(index, block)
    output = estimate_tokens([block_json(b) for b in blocks])
    yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason(blocks), "stop_sequence": None},
                            "usage": {"output_tokens": output}}
    yield "message_stop", {"type": "message_stop"}


def _block_events(index: int, block: Block) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(block, Text):
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": {"type": "text", "text": ""}}
        for piece in _pieces(block.text, TEXT_PIECE):
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "text_delta", "text": piece}}
    else:
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}}
        for piece in _pieces(json.dumps(dict(block.input), ensure_ascii=False), JSON_PIECE):
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "input_json_delta", "partial_json": piece}}
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event: ``event:`` and a single-line ``data:``, ended by a blank line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def error_body(kind: str, text: str) -> dict[str, Any]:
    """The API's error shape, e.g. ``invalid_request_error``, ``authentication_error``, ``not_found_error``."""
    return {"type": "error", "error": {"type": kind, "message": text}}


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Split an SSE stream back into (event, data) pairs (for tests and the transcript)."""
    out = []
    for frame in raw.decode("utf-8").split("\n\n"):
        if not frame.strip():
            continue
        event, data = "", []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        out.append((event, json.loads("\n".join(data))))
    return out
