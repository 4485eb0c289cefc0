"""Anthropic Messages shapes as OpenAI chat shapes.

- ``to_chat_request``: a Messages request (validated, ``anthropic_types``) as a chat body:
  ``system`` becomes a system message, ``tool_use`` blocks assistant ``tool_calls``,
  ``tool_result`` blocks tool messages, images ``image_url`` parts; thinking blocks in the
  history, the ``thinking`` budget and ``top_k`` are dropped (chat has no counterpart).
  Used by the ``/v1/messages`` surface.
- ``to_openai_completion``: a Messages reply as a ``chat.completion`` object, and
  ``StreamTranslator``: the stream's events (``message_start``, ``content_block_*``,
  ``message_delta``, ``message_stop``) as ``chat.completion.chunk`` events. Used by the
  Anthropic provider.

A stop sequence that ended a reply is kept as the choice's ``stop_reason`` (vLLM's field
for the same thing), so a reply that goes Anthropic -> chat -> Anthropic still says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson

from router_proxy.errors import InvalidRequestError, UpstreamError
from router_proxy.protocol import MalformedUsage, Usage, usage_object, usage_tokens
from router_proxy.translate.anthropic_types import (
    AssistantMessage,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    PlainTextSource,
    TextBlock,
    TokenCountRequest,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolResultBlock,
    ToolUseBlock,
    URLImageSource,
    UserMessage,
)
from router_proxy.translate.common import Json, scrub, sse_event, token_count


class CallInfo(Protocol):
    """What the reply translation reads of the call (``providers.base.UpstreamCall``)."""

    @property
    def model_name(self) -> str: ...
    @property
    def upstream_model(self) -> str: ...
    @property
    def body(self) -> dict[str, Any]: ...
    @property
    def request_id(self) -> str: ...


# Told what was wrong with an upstream's usage (which is then left out).
BadUsage = Callable[[str], None]


class StreamSink(Protocol):
    """Where a stream's usage and finish go (``providers.base.StreamStats``)."""

    usage: Usage | None
    finish_reason: str | None


# --- requests: Messages -> chat -------------------------------------------------------

# Top-level parameters that ask Anthropic's servers to do work a chat model cannot.
_SERVER_SIDE = ("mcp_servers", "container")


def refuse_server_features(raw: Json) -> None:
    """400 for server tools (web search, code execution, ...) and MCP servers, named
    clearly (the schema alone would only say that a tool's ``type`` is not 'custom')."""
    tools = raw.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in (None, "custom"):
            raise InvalidRequestError(
                f"tools.{i}: server tool '{kind}' is not supported: the gateway answers "
                "with chat-format models, which take only custom tools "
                "(name, description, input_schema)",
                param=f"tools.{i}.type",
            )
    for key in _SERVER_SIDE:
        if raw.get(key):
            raise InvalidRequestError(
                f"{key}: not supported: the gateway answers with chat-format models",
                param=key,
            )


def _image_part(block: ImageBlock) -> Json:
    source = block.source
    if isinstance(source, URLImageSource):
        url = source.url
    else:
        url = f"data:{source.media_type};base64,{source.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: DocumentBlock) -> Json:
    source = block.source
    if isinstance(source, PlainTextSource):
        text = f"{block.title}\n\n{source.data}" if block.title else source.data
        return {"type": "text", "text": text}
    data = f"data:{source.media_type};base64,{source.data}"
    return {"type": "file", "file": {"filename": block.title or "document.pdf", "file_data": data}}


def _tool_message(block: ToolResultBlock) -> tuple[Json, list[Json]]:
    """The tool message for a result, and the result's images (a tool message holds text
    only: they follow in the user message)."""
    content = block.content
    if content is None or isinstance(content, str):
        texts, images = [content or ""], []
    else:
        texts = [p.text for p in content if isinstance(p, TextBlock)]
        images = [_image_part(p) for p in content if isinstance(p, ImageBlock)]
    text = "\n".join(t for t in texts if t)
    if block.is_error:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}, images


def _user_messages(message: UserMessage) -> list[Json]:
    """Tool messages first (they answer the assistant's calls), then the user's parts."""
    if isinstance(message.content, str):
        return [{"role": "user", "content": message.content}]
    out: list[Json] = []
    parts: list[Json] = []
    for block in message.content:
        if isinstance(block, ToolResultBlock):
            tool, images = _tool_message(block)
            out.append(tool)
            parts.extend(images)
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block))
        elif isinstance(block, DocumentBlock):
            parts.append(_document_part(block))
        else:
            parts.append({"type": "text", "text": block.text})
    if parts or not out:
        single_text = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if single_text else parts})
    return out


def _tool_call(block: ToolUseBlock) -> Json:
    arguments = orjson.dumps(block.input).decode()
    return {
        "id": block.id,
        "type": "function",
        "function": {"name": block.name, "arguments": arguments},
    }


def _assistant_message(message: AssistantMessage) -> Json:
    if isinstance(message.content, str):
        return {"role": "assistant", "content": message.content}
    texts = [b.text for b in message.content if isinstance(b, TextBlock) and b.text]
    calls = [_tool_call(b) for b in message.content if isinstance(b, ToolUseBlock)]
    # Thinking and redacted thinking blocks are left out: chat upstreams take none.
    out: Json = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    elif not texts:
        out["content"] = ""
    return out


def _system_text(system: str | list[TextBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n\n".join(block.text for block in system if block.text)


def _add_tools(request: TokenCountRequest, body: Json) -> None:
    if not request.tools:
        return  # a tool_choice without tools means nothing to a chat model
    body["tools"] = [
        {
            "type": "function",
            "function": {"name": tool.name, "parameters": tool.input_schema}
            | ({"description": tool.description} if tool.description else {}),
        }
        for tool in request.tools
    ]
    choice = request.tool_choice
    if choice is None:
        return
    if isinstance(choice, ToolChoiceNone):
        body["tool_choice"] = "none"
        return
    if isinstance(choice, ToolChoiceAuto):
        body["tool_choice"] = "auto"
    elif isinstance(choice, ToolChoiceAny):
        body["tool_choice"] = "required"
    else:
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    if choice.disable_parallel_tool_use:
        body["parallel_tool_calls"] = False


def to_chat_prompt(request: TokenCountRequest) -> Json:
    """The chat body's prompt: model, messages, tools (what ``count_tokens`` counts)."""
    messages: list[Json] = []
    system = _system_text(request.system)
    if system:
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        if isinstance(message, UserMessage):
            messages.extend(_user_messages(message))
        else:
            messages.append(_assistant_message(message))
    body: Json = {"model": request.model, "messages": messages}
    _add_tools(request, body)
    return body


def to_chat_request(request: MessagesRequest) -> Json:
    """A chat-completions body for a Messages request; a stream asks for usage."""
    body = to_chat_prompt(request)
    body["max_tokens"] = request.max_tokens
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop_sequences:
        body["stop"] = list(request.stop_sequences)
    if request.metadata is not None and request.metadata.user_id:
        body["user"] = request.metadata.user_id
    return body


# --- replies: Messages -> chat --------------------------------------------------------

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


def prompt_tokens(usage: Json) -> int:
    """MalformedUsage when a count is not a count."""
    # Anthropic counts cached prompt tokens apart; OpenAI's prompt_tokens includes them.
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(usage_tokens(usage, key) for key in keys)


def usage_of(raw: Any) -> Usage | None:
    """A Messages usage object as chat usage; None when absent; MalformedUsage when it
    is not token counts."""
    usage = usage_object(raw)
    if usage is None:
        return None
    return Usage(
        prompt_tokens=prompt_tokens(usage), completion_tokens=usage_tokens(usage, "output_tokens")
    )


def _usage_or_none(raw: Any, bad_usage: BadUsage | None) -> Usage | None:
    """``usage_of``, with a malformed usage left out (and told to ``bad_usage``)."""
    try:
        return usage_of(raw)
    except MalformedUsage as exc:
        if bad_usage is not None:
            bad_usage(str(exc))
        return None


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


def _stop_fields(stop_reason: Any, stop_sequence: Any) -> Json:
    """The choice's ``finish_reason``, and the stop sequence that ended it if any."""
    fields: Json = {"finish_reason": finish_reason(stop_reason)}
    if stop_reason == "stop_sequence" and isinstance(stop_sequence, str):
        fields["stop_reason"] = stop_sequence
    return fields


def to_openai_completion(
    data: Any, call: CallInfo, bad_usage: BadUsage | None = None
) -> tuple[Json, Usage | None]:
    """An Anthropic ``message`` as an OpenAI ``chat.completion`` object; a malformed
    usage is left out (and told to ``bad_usage``)."""
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
    usage = _usage_or_none(data.get("usage"), bad_usage)
    choice = {"index": 0, "message": message, "logprobs": None}
    choice |= _stop_fields(data.get("stop_reason"), data.get("stop_sequence"))
    payload: Json = {
        "id": str(data.get("id") or f"chatcmpl-{call.request_id}"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(data.get("model") or call.upstream_model),
        "choices": [choice],
    }
    if usage is not None:
        payload["usage"] = usage_json(usage)
    return payload, usage


def _error_message(payload: Json) -> str:
    error = payload.get("error", payload)
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return error if isinstance(error, str) else "unrecognised error body"


class StreamTranslator:
    """Turns Anthropic stream events into OpenAI chunks, filling ``stats`` on the way."""

    def __init__(
        self,
        call: CallInfo,
        stats: StreamSink,
        secrets: Iterable[str],
        bad_usage: BadUsage | None = None,
    ) -> None:
        self.call = call
        self.stats = stats
        self.secrets = list(secrets)
        self.bad_usage = bad_usage
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

    def feed(self, event: str, data: str | bytes) -> list[bytes]:
        """The OpenAI chunks for one Anthropic event (often none); UpstreamError for an
        event that is not a JSON object."""
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None
        if type(payload) is not dict:
            raise UpstreamError(f"model '{self.call.model_name}' sent a malformed stream event")
        handler = self.handlers.get(str(payload.get("type") or event))
        return handler(payload) if handler is not None else []

    def _chunk(self, delta: Json, finish: Json | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None}
        choice |= finish or {"finish_reason": None}
        return sse_event(self.envelope | {"choices": [choice]})

    def _message_start(self, payload: Json) -> list[bytes]:
        message = payload.get("message")
        message = message if isinstance(message, dict) else {}
        if isinstance(message.get("id"), str):
            self.envelope["id"] = message["id"]
        if isinstance(message.get("model"), str):
            self.envelope["model"] = message["model"]
        usage = _usage_or_none(message.get("usage"), self.bad_usage)
        if usage is not None:
            self.prompt_tokens = usage.prompt_tokens
            self.stats.usage = usage
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, payload: Json) -> list[bytes]:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            return []
        if block.get("type") == "tool_use":
            index = len(self.tools)
            self.tools[token_count(payload.get("index"))] = index
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
        index = self.tools.get(token_count(payload.get("index")))
        partial = delta.get("partial_json")
        if delta.get("type") == "input_json_delta" and index is not None and partial:
            piece = {"index": index, "function": {"arguments": str(partial)}}
            return [self._chunk({"tool_calls": [piece]})]
        return []  # thinking and signature deltas have no OpenAI counterpart

    def _message_delta(self, payload: Json) -> list[bytes]:
        usage = _usage_or_none(payload.get("usage"), self.bad_usage)
        if usage is not None:
            self.stats.usage = Usage(
                prompt_tokens=usage.prompt_tokens or self.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
        delta = payload.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        stop_reason = delta.get("stop_reason")
        if stop_reason is None:
            return []
        finish = _stop_fields(stop_reason, delta.get("stop_sequence"))
        self.stats.finish_reason = finish["finish_reason"]
        return [self._chunk({}, finish)]

    def _message_stop(self, payload: Json) -> list[bytes]:
        self.finished = True
        if self.include_usage and self.stats.usage is not None:
            return [
                sse_event(self.envelope | {"choices": [], "usage": usage_json(self.stats.usage)})
            ]
        return []

    def _error(self, payload: Json) -> list[bytes]:
        message = scrub(_error_message(payload), self.secrets)
        raise UpstreamError(f"model '{self.call.model_name}' stream failed: {message}")
