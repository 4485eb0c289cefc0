"""Anthropic's Messages API behind the OpenAI chat-completions shape.

Requests are translated field by field: system and developer messages become the
top-level ``system``, tool calls become ``tool_use`` blocks and tool replies
``tool_result`` blocks, consecutive turns of one role are merged. Parameters the Messages
API does not know are dropped, because Anthropic rejects unknown fields. Replies and
stream events come back as ``chat.completion`` objects and chunks
(see ``anthropic_stream``).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr

from router_proxy.config.base import ProviderConfigBase
from router_proxy.errors import InvalidRequestError
from router_proxy.providers.anthropic_stream import to_openai_completion, translate_stream
from router_proxy.providers.base import ChatStream, Completion, StreamStats, UpstreamCall
from router_proxy.providers.http_provider import HTTPProvider

Json = dict[str, Any]
MESSAGES_PATH = "v1/messages"


class AnthropicProviderConfig(ProviderConfigBase):
    type: Literal["anthropic"]
    base_url: str = Field(
        default="https://api.anthropic.com",
        pattern=r"^https?://",
        description="API root without /v1; requests go to {base_url}/v1/messages",
    )
    api_key: SecretStr | None = None
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(
        default=4096, ge=1, description="max_tokens when the client sets none (Anthropic needs one)"
    )


def _invalid(message: str, param: str = "messages") -> InvalidRequestError:
    return InvalidRequestError(f"{message} (Anthropic models)", param=param)


def _text_only(content: Any, where: str) -> str:
    """The text of content that may only hold text (system prompts, tool results)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _invalid(f"{where} content must be a string or a list of parts")
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            raise _invalid(f"{where} may only hold text parts")
        texts.append(str(part.get("text") or ""))
    return "\n".join(texts)


def _image_block(part: Json) -> Json:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise _invalid("an image_url part needs a url")
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, *params = header.split(";")
        if not comma or not media_type or "base64" not in params:
            raise _invalid("image data URLs must look like data:<media type>;base64,<data>")
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _invalid("image URLs must be data: or http(s): URLs")


def _content_blocks(content: Any) -> list[Json]:
    """User or assistant content as Anthropic blocks; empty text is left out (refused)."""
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _invalid("message content must be a string or a list of parts")
    blocks = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(part, dict) and kind in ("text", "refusal"):
            text = part.get(kind)
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        elif isinstance(part, dict) and kind == "image_url":
            blocks.append(_image_block(part))
        else:
            raise _invalid(f"content parts of type '{kind}' are not supported")
    return blocks


def _tool_use_block(tool_call: Any) -> Json:
    if not isinstance(tool_call, dict) or not isinstance(tool_call.get("id"), str):
        raise _invalid("an assistant tool call needs an id")
    function = tool_call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _invalid("an assistant tool call needs a function name")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"tool call arguments of '{function['name']}' are not JSON") from exc
    if not isinstance(parsed, dict):
        raise _invalid(f"tool call arguments of '{function['name']}' must be a JSON object")
    return {"type": "tool_use", "id": tool_call["id"], "name": function["name"], "input": parsed}


def _tool_result_block(message: Json) -> Json:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str):
        raise _invalid("a tool message needs a tool_call_id")
    block: Json = {"type": "tool_result", "tool_use_id": tool_call_id}
    text = _text_only(message.get("content"), "tool message")
    if text:
        block["content"] = text
    return block


def _turn(message: Json) -> tuple[str, list[Json]]:
    role = message.get("role")
    if role == "user":
        return "user", _content_blocks(message.get("content"))
    if role == "assistant":
        blocks = _content_blocks(message.get("content"))
        return "assistant", blocks + [_tool_use_block(t) for t in message.get("tool_calls") or ()]
    if role == "tool":
        return "user", [_tool_result_block(message)]
    raise _invalid(f"messages with role '{role}' are not supported")


def split_messages(messages: list[Any]) -> tuple[str, list[Json]]:
    """(system prompt, alternating user/assistant turns) for OpenAI messages."""
    system: list[str] = []
    turns: list[Json] = []
    for message in messages:
        if not isinstance(message, dict):
            raise _invalid("each message must be an object")
        if message.get("role") in ("system", "developer"):
            system.append(_text_only(message.get("content"), "a system message"))
            continue
        role, blocks = _turn(message)
        if not blocks:
            continue  # Anthropic refuses empty turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        # In a user turn, tool results must come before anything else.
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return "\n\n".join(s for s in system if s), turns


def _tools(tools: Any) -> list[Json]:
    if not isinstance(tools, list):
        raise _invalid("tools must be a list", "tools")
    out = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise _invalid("only function tools are supported", "tools")
        if not isinstance(function.get("name"), str):
            raise _invalid("a function tool needs a name", "tools")
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        entry: Json = {"name": function["name"], "input_schema": schema}
        if function.get("description"):
            entry["description"] = function["description"]
        out.append(entry)
    return out


_TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}


def _tool_choice(choice: Any) -> Json:
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return {"type": _TOOL_CHOICES[choice]}
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"type": "tool", "name": function["name"]}
    raise _invalid("tool_choice must be auto, required, none or a named function", "tool_choice")


def _add_tools(body: Json, out: Json) -> None:
    if not body.get("tools"):
        return  # a tool_choice without tools means nothing to Anthropic
    out["tools"] = _tools(body["tools"])
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls")
    if choice is None and parallel is not False:
        return
    out["tool_choice"] = _tool_choice(choice if choice is not None else "auto")
    if parallel is False and out["tool_choice"]["type"] != "none":
        out["tool_choice"]["disable_parallel_tool_use"] = True


def to_anthropic_request(body: Json, *, model: str, default_max_tokens: int, stream: bool) -> Json:
    """A Messages API request for an OpenAI chat-completions body."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _invalid("messages must be a list")
    if body.get("n") not in (None, 1):
        raise _invalid("n must be 1", "n")
    system, turns = split_messages(messages)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    out: Json = {"model": model, "max_tokens": max_tokens, "messages": turns}
    if system:
        out["system"] = system
    if stream:
        out["stream"] = True
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}
    _add_tools(body, out)
    return out


class AnthropicProvider(HTTPProvider):
    config_model = AnthropicProviderConfig
    config: AnthropicProviderConfig

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def default_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.config.anthropic_version}
        if self.config.api_key is not None:
            headers["x-api-key"] = self.config.api_key.get_secret_value()
        return headers

    def _payload(self, call: UpstreamCall, *, stream: bool) -> Json:
        return to_anthropic_request(
            call.body,
            model=call.upstream_model,
            default_max_tokens=self.config.default_max_tokens,
            stream=stream,
        )

    async def complete(self, call: UpstreamCall) -> Completion:
        _, data = await self.send_json(MESSAGES_PATH, self._payload(call, stream=False), call)
        payload, usage = to_openai_completion(data, call)
        return Completion(body=orjson.dumps(payload), usage=usage)

    async def stream(self, call: UpstreamCall) -> ChatStream:
        response = await self.open_stream(MESSAGES_PATH, self._payload(call, stream=True), call)
        stats = StreamStats()
        chunks = translate_stream(response, call, stats, provider=self.name, secrets=self.secrets)
        return ChatStream(chunks, stats)
