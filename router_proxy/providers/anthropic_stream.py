"""Anthropic Messages replies in OpenAI shapes: the non-streaming reply, and the stream's
events (``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``)
translated one by one into ``chat.completion.chunk`` SSE events."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import aiohttp
import orjson

from router_proxy.errors import UpstreamError
from router_proxy.protocol import Usage
from router_proxy.providers.base import StreamStats, UpstreamCall
from router_proxy.providers.http import (
    DONE_EVENT,
    event_blocks,
    events,
    scrub,
    sse_event,
    translate_errors,
    upstream_error_message,
)
from router_proxy.providers.http_provider import close_response

Json = dict[str, Any]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def prompt_tokens(usage: Json) -> int:
    # Anthropic counts cached prompt tokens apart; OpenAI's prompt_tokens includes them.
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(_count(usage.get(key)) for key in keys)


def usage_of(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(
        prompt_tokens=prompt_tokens(raw), completion_tokens=_count(raw.get("output_tokens"))
    )


def usage_json(usage: Usage) -> Json:
    return usage.model_dump() | {"total_tokens": usage.total_tokens}


def tool_call(block: Json) -> Json:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {
            "name": block.get("name"),
            "arguments": orjson.dumps(block.get("input") or {}).decode(),
        },
    }


def to_openai_completion(data: Any, call: UpstreamCall) -> tuple[Json, Usage | None]:
    """An Anthropic ``message`` as an OpenAI ``chat.completion`` object."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise UpstreamError(f"model '{call.model_name}' returned an unexpected reply")
    blocks = [b for b in data["content"] if isinstance(b, dict)]
    texts = [str(b.get("text") or "") for b in blocks if b.get("type") == "text"]
    tool_calls = [tool_call(b) for b in blocks if b.get("type") == "tool_use"]
    message: Json = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    elif not texts:
        message["content"] = ""  # an empty reply, not a tool call
    usage = usage_of(data.get("usage"))
    payload: Json = {
        "id": str(data.get("id") or f"chatcmpl-{call.request_id}"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(data.get("model") or call.upstream_model),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(data.get("stop_reason")),
            }
        ],
    }
    if usage is not None:
        payload["usage"] = usage_json(usage)
    return payload, usage


class StreamTranslator:
    """Turns Anthropic stream events into OpenAI chunks, filling ``stats`` on the way."""

    def __init__(self, call: UpstreamCall, stats: StreamStats, secrets: Iterable[str]) -> None:
        self.call = call
        self.stats = stats
        self.secrets = list(secrets)
        options = call.body.get("stream_options")
        self.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.envelope: Json = {
            "id": f"chatcmpl-{call.request_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.upstream_model,
        }
        self.prompt_tokens = 0
        self.tools: dict[int, int] = {}  # Anthropic content block index -> tool_calls index
        self.finished = False
        self.handlers: dict[str, Callable[[Json], list[bytes]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    def feed(self, event: str, data: str) -> list[bytes]:
        """The OpenAI chunks for one Anthropic event (often none)."""
        if event == "ping":
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                f"model '{self.call.model_name}' sent a malformed stream event"
            ) from exc
        if not isinstance(payload, dict):
            return []
        handler = self.handlers.get(str(payload.get("type") or event))
        return handler(payload) if handler is not None else []

    def _chunk(self, delta: Json, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse_event(self.envelope | {"choices": [choice]})

    def _message_start(self, payload: Json) -> list[bytes]:
        message = payload.get("message")
        message = message if isinstance(message, dict) else {}
        if isinstance(message.get("id"), str):
            self.envelope["id"] = message["id"]
        if isinstance(message.get("model"), str):
            self.envelope["model"] = message["model"]
        usage = message.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = prompt_tokens(usage)
            self.stats.usage = Usage(
                prompt_tokens=self.prompt_tokens,
                completion_tokens=_count(usage.get("output_tokens")),
            )
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, payload: Json) -> list[bytes]:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            return []
        if block.get("type") == "tool_use":
            index = len(self.tools)
            self.tools[_count(payload.get("index"))] = index
            entry = tool_call(block)
            entry["function"]["arguments"] = ""  # the input arrives as input_json_delta
            return [self._chunk({"tool_calls": [{"index": index, **entry}]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": str(block["text"])})]
        return []

    def _block_delta(self, payload: Json) -> list[bytes]:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk({"content": str(delta["text"])})]
        index = self.tools.get(_count(payload.get("index")))
        partial = delta.get("partial_json")
        if delta.get("type") == "input_json_delta" and index is not None and partial:
            piece = {"index": index, "function": {"arguments": str(partial)}}
            return [self._chunk({"tool_calls": [piece]})]
        return []  # thinking and signature deltas have no OpenAI counterpart

    def _message_delta(self, payload: Json) -> list[bytes]:
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.stats.usage = Usage(
                prompt_tokens=prompt_tokens(usage) or self.prompt_tokens,
                completion_tokens=_count(usage.get("output_tokens")),
            )
        delta = payload.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is None:
            return []
        self.stats.finish_reason = finish_reason(stop_reason)
        return [self._chunk({}, self.stats.finish_reason)]

    def _message_stop(self, payload: Json) -> list[bytes]:
        self.finished = True
        if self.include_usage and self.stats.usage is not None:
            return [
                sse_event(self.envelope | {"choices": [], "usage": usage_json(self.stats.usage)})
            ]
        return []

    def _error(self, payload: Json) -> list[bytes]:
        message = scrub(upstream_error_message(orjson.dumps(payload)), self.secrets)
        raise UpstreamError(f"model '{self.call.model_name}' stream failed: {message}")


async def translate_stream(
    response: aiohttp.ClientResponse,
    call: UpstreamCall,
    stats: StreamStats,
    *,
    provider: str,
    secrets: Iterable[str],
) -> AsyncGenerator[bytes, None]:
    """OpenAI SSE events for an open Anthropic stream; closes the response at the end."""
    translator = StreamTranslator(call, stats, secrets)
    try:
        with translate_errors(provider, call.model_name):
            async for block in event_blocks(response.content, call.timeouts.total, call.model_name):
                for event, data, _raw in events(block):
                    for chunk in translator.feed(event, data):
                        yield chunk
                    if translator.finished:
                        break
                if translator.finished:
                    break
        if not translator.finished:
            raise UpstreamError(f"model '{call.model_name}' stream ended before message_stop")
        yield DONE_EVENT
    finally:
        close_response(response)
