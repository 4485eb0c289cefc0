"""The chosen answer as one normal completion: whole (its usage the sum of every call's),
or as a chat stream (the surfaces translate it into their own shape like any other)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from router_proxy.engine.multi_call.calls import Call, Price
from router_proxy.engine.multi_call.note import MultiCallNote
from router_proxy.protocol import Usage
from router_proxy.providers.base import ChatStream, Completion, StreamStats

DONE = b"data: [DONE]\n\n"


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def whole(chosen: Call, note: MultiCallNote) -> Completion:
    """The chosen call's completion with the usage of every call."""
    usage = note.usage()
    body = dict(chosen.body or {})
    body["usage"] = usage_json(usage)
    return Completion(orjson.dumps(body), usage)


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def replayed(chosen: Call, note: MultiCallNote, include_usage: bool) -> tuple[ChatStream, bytes]:
    """A decided answer as a stream: its message in one chunk, then its finish reason,
    then (when the client asked for it) the usage of every call."""
    body = chosen.body or {}
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    head = {
        "id": body.get("id") or "chatcmpl-multicall",
        "object": "chat.completion.chunk",
        "created": body.get("created") or int(time.time()),
        "model": body.get("model") or chosen.model,
    }
    delta: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i} | call for i, call in enumerate(message["tool_calls"])]
    first = _event(head | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    finish = choice.get("finish_reason") or "stop"
    rest = [_event(head | {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})]
    usage = note.usage()
    if include_usage:
        rest.append(_event(head | {"choices": [], "usage": usage_json(usage)}))
    rest.append(DONE)

    async def chunks() -> AsyncGenerator[bytes, None]:
        for event in rest:
            yield event

    return ChatStream(chunks(), StreamStats(usage, finish)), first


def live(
    stream: ChatStream, first: bytes, final: Call, note: MultiCallNote, price: Price
) -> tuple[ChatStream, bytes]:
    """The last call's own stream, relayed as it comes; its usage event (and the stream's
    usage at its end) counts every call, and the last call is priced when it ends."""
    earlier = note.usage()
    stats = StreamStats()

    def summed(block: bytes) -> bytes:
        return _summed(block, earlier) if b'"usage"' in block else block

    async def chunks() -> AsyncGenerator[bytes, None]:
        try:
            async for block in stream.chunks:
                yield summed(block)
        finally:
            await stream.chunks.aclose()
            final.usage = stream.stats.usage
            final.cost = price(final.model, final.usage)
            stats.finish_reason = stream.stats.finish_reason
            stats.usage = note.usage()

    return ChatStream(chunks(), stats), summed(first)


def _summed(block: bytes, earlier: Usage) -> bytes:
    """``block``'s events with ``earlier`` added to any usage they report."""
    events = []
    for event in block.split(b"\n\n"):
        if event.startswith(b"data: {") and b'"usage"' in event:
            data = orjson.loads(event[6:])
            usage = data.get("usage")
            if isinstance(usage, dict):
                total = Usage(
                    prompt_tokens=int(usage.get("prompt_tokens") or 0) + earlier.prompt_tokens,
                    completion_tokens=int(usage.get("completion_tokens") or 0)
                    + earlier.completion_tokens,
                )
                data["usage"] = usage | usage_json(total)
                event = b"data: " + orjson.dumps(data)
        events.append(event)
    return b"\n\n".join(events)
