"""``POST /v1/messages``: Anthropic's Messages API in front of the same engine.

The request is validated against the Messages shapes (``translate.anthropic_types``) and
translated into a chat body (``translate.anthropic_to_chat``); the answer, whole or
streamed, goes back as a Messages ``message`` or Messages stream events
(``translate.chat_to_anthropic``); every error in Anthropic's shape
``{"type": "error", "error": {"type", "message"}}``. Clients send their key as
``x-api-key`` (or ``Authorization: Bearer``); ``anthropic-version`` is accepted, not
required. Dropped on the way, since chat-format models take no such thing: thinking
blocks in the history, the ``thinking`` budget, ``top_k``.

``POST /v1/messages/count_tokens`` counts a prompt offline (``count_tokens`` below).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any, TypeVar

import orjson
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from router_proxy.config.schema import ServerConfig
from router_proxy.errors import GatewayError, InvalidRequestError
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.providers.base import Completion
from router_proxy.runtime import Runtime
from router_proxy.server.body import parse_chat_request, read_json_body
from router_proxy.server.ids import REQUEST_ID_HEADER, request_id_of
from router_proxy.server.surfaces.base import Surface
from router_proxy.signals.tokens import shared_counter
from router_proxy.translate.anthropic_to_chat import (
    refuse_server_features,
    to_chat_prompt,
    to_chat_request,
)
from router_proxy.translate.anthropic_types import MessagesRequest, TokenCountRequest
from router_proxy.translate.chat_to_anthropic import AnthropicStreamWriter, to_anthropic_message
from router_proxy.translate.common import Json, SSEReader, sse_event

# The Anthropic SDK reads a response's id from ``request-id``.
ANTHROPIC_REQUEST_ID = "request-id"

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}

Request_T = TypeVar("Request_T", MessagesRequest, TokenCountRequest)


def anthropic_error(error: GatewayError) -> Json:
    """The Messages API's error object for a gateway error (its status stays)."""
    status = error.status_code
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def _param(loc: tuple[int | str, ...]) -> str:
    # Pydantic names union members in locs ("str", "list[...]"); a tagged union's tag
    # ("user", "text") stays, as in Anthropic's own messages.
    parts = [str(p) for p in loc if not (isinstance(p, str) and (p == "str" or "[" in p))]
    return ".".join(parts) or "body"


def validate(raw: dict[str, Any], shape: type[Request_T], max_messages: int) -> Request_T:
    """The request in its Messages shape; 400 naming the first bad field."""
    messages = raw.get("messages")
    if isinstance(messages, list) and len(messages) > max_messages:
        raise InvalidRequestError(
            f"messages: {len(messages)} messages is more than the limit of {max_messages}",
            param="messages",
            code="too_many_messages",
        )
    refuse_server_features(raw)
    try:
        return shape.model_validate(raw)
    except ValidationError as exc:
        # The deepest error: for content that is a string or a list of blocks, the
        # block's own mistake rather than "should be a valid string".
        error = max(exc.errors(), key=lambda e: len(e["loc"]))
        param = _param(error["loc"])
        message = "Field required" if error["type"] == "missing" else error["msg"]
        raise InvalidRequestError(f"{param}: {message}", param=param) from None


# Request fields chat has no counterpart for (cache_control marks are dropped too, but
# they only change the upstream's caching, not the answer).
_UNTRANSLATED = ("thinking", "top_k")


def _has_thinking(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking") for b in content
    )


class MessagesSurface(Surface):
    name = "messages"
    native = "anthropic.messages"

    def credential(self, headers: Mapping[str, str]) -> str | None:
        key = headers.get("x-api-key")
        return f"Bearer {key}" if key else headers.get("authorization")

    def parse(
        self, raw: dict[str, Any], settings: ServerConfig
    ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        body = to_chat_request(validate(raw, MessagesRequest, settings.max_messages))
        self.dropped = tuple(key for key in _UNTRANSLATED if key in raw)
        if any(_has_thinking(m) for m in raw.get("messages") or ()):
            self.dropped += ("thinking blocks",)
        return parse_chat_request(body, settings.max_messages), body

    def response_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """``request-id`` beside ``x-router-request-id``: the id the Anthropic SDK reports."""
        return headers | {ANTHROPIC_REQUEST_ID: headers[REQUEST_ID_HEADER]}

    def render(self, completion: Completion) -> bytes:
        return orjson.dumps(to_anthropic_message(orjson.loads(completion.body)))

    async def translate_stream(
        self, events: AsyncGenerator[bytes, None]
    ) -> AsyncGenerator[bytes, None]:
        writer, reader = AnthropicStreamWriter(), SSEReader()
        async with aclosing(events):
            async for piece in events:
                out: list[bytes] = []
                for event, data in reader.feed(piece):
                    if event == "error":  # our own error_event: the stream's last word
                        out.append(b"event: error\ndata: " + data + b"\n\n")
                        writer.ended = True
                    else:
                        out += writer.feed(data)
                if out:
                    yield b"".join(out)
        tail = [event for _, data in reader.flush() for event in writer.feed(data)]
        tail += writer.finish()  # a stream cut short of [DONE] still ends its message
        if tail:
            yield b"".join(tail)

    def error_event(self, error: GatewayError) -> bytes:
        return sse_event(anthropic_error(error), "error")

    def error_response(self, error: GatewayError, headers: dict[str, str]) -> Response:
        return JSONResponse(
            anthropic_error(error), status_code=error.status_code, headers=error.headers | headers
        )


def prompt_text(prompt: Json) -> str:
    """The text a chat prompt holds: messages (text parts, tool calls' names and
    arguments) and tool definitions."""
    texts: list[str] = []
    for message in prompt["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if p.get("type") == "text"]
        for call in message.get("tool_calls") or ():
            texts += [call["function"]["name"], call["function"]["arguments"]]
    texts += [orjson.dumps(tool["function"]).decode() for tool in prompt.get("tools") or ()]
    return "\n".join(texts)


def _count(prompt: Json) -> int:
    return shared_counter().count(prompt_text(prompt)).tokens


async def count_tokens(runtime: Runtime, request: Request) -> Response:
    """``{"input_tokens": N}``: the prompt's ``cl100k_base`` tokens, counted here (an
    estimate of the model's own count: no per-message overhead, images not counted);
    no model is called."""
    surface = MessagesSurface()
    headers = surface.response_headers({REQUEST_ID_HEADER: request_id_of(request)})
    settings = runtime.engine.settings
    try:
        # Counting is work done for the client: its request limit applies.
        await runtime.engine.admit_client(surface.credential(request.headers))
        raw = await read_json_body(request, settings.max_body_bytes)
        prompt = to_chat_prompt(validate(raw, TokenCountRequest, settings.max_messages))
        # Off the event loop: the first count loads the vocabulary, a long one takes ms.
        tokens = await run_in_threadpool(_count, prompt)
    except GatewayError as exc:
        return surface.error_response(exc, headers)
    return JSONResponse({"input_tokens": tokens}, headers=headers)
