"""OpenAI chat shapes as Anthropic Messages shapes.

- ``to_anthropic_request``: a chat body as a Messages request, field by field: system
  and developer messages become the top-level ``system``, tool calls ``tool_use`` blocks
  and tool replies ``tool_result`` blocks, consecutive turns of one role are merged.
  Parameters the Messages API does not know are dropped, because Anthropic rejects
  unknown fields. Used by the Anthropic provider.
- ``to_anthropic_message``: a ``chat.completion`` object as a Messages ``message``, and
  ``AnthropicStreamWriter``: ``chat.completion.chunk`` events as the Messages stream
  (``message_start``, ``content_block_start`` / ``_delta`` / ``_stop`` per block,
  ``message_delta``, ``message_stop``). Used by the ``/v1/messages`` surface.
"""

from __future__ import annotations

from typing import Any

import orjson

from router_proxy.errors import InvalidRequestError
from router_proxy.ids import unique_hex
from router_proxy.translate.common import Json, sse_event, token_count
from router_proxy.translate.history import portable_tool_id

# --- requests: chat -> Messages -------------------------------------------------------


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
    call_id = portable_tool_id(tool_call["id"])  # e.g. Kimi's "functions.f:0": refused
    return {"type": "tool_use", "id": call_id, "name": function["name"], "input": parsed}


def _tool_result_block(message: Json) -> Json:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str):
        raise _invalid("a tool message needs a tool_call_id")
    block: Json = {"type": "tool_result", "tool_use_id": portable_tool_id(tool_call_id)}
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


# --- replies: chat -> Messages --------------------------------------------------------

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(choice: Json) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for a choice; a stop sequence is known when the
    upstream names the one that matched in ``stop_reason`` (vLLM does)."""
    finish, matched = choice.get("finish_reason"), choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn", None


def message_id(chat_id: Any) -> str:
    """``msg_...`` for a completion's id (an Anthropic upstream's own id is kept)."""
    if isinstance(chat_id, str) and chat_id.startswith("msg_"):
        return chat_id
    if isinstance(chat_id, str) and chat_id.removeprefix("chatcmpl-"):
        return "msg_" + chat_id.removeprefix("chatcmpl-")
    return "msg_" + unique_hex()


def _tool_use_id(chat_id: Any) -> str:
    if isinstance(chat_id, str) and chat_id:
        return portable_tool_id(chat_id)  # sent back next turn, maybe to Anthropic itself
    return "toolu_" + unique_hex()


def tool_input(arguments: Any) -> Json:
    """A tool call's arguments as the ``input`` object; arguments that are not a JSON
    object (a model's malformed output) become ``{}``."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def anthropic_usage(usage: Any) -> Json:
    """OpenAI usage as Anthropic's: cached prompt tokens are counted apart."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = token_count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    out: Json = {
        "input_tokens": max(token_count(usage.get("prompt_tokens")) - cached, 0),
        "output_tokens": token_count(usage.get("completion_tokens")),
    }
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def _first_choice(data: Json) -> Json:
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return {}


def _reply_text(message: Json) -> str:
    content = message.get("content")
    if isinstance(content, list):  # some servers answer with parts
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        content = "".join(t for t in texts if isinstance(t, str))
    refusal = message.get("refusal")
    text = content if isinstance(content, str) else ""
    return text or (refusal if isinstance(refusal, str) else "")


def to_anthropic_message(data: Any) -> Json:
    """A ``chat.completion`` object as a Messages ``message``."""
    data = data if isinstance(data, dict) else {}
    choice = _first_choice(data)
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content: list[Json] = []
    text = _reply_text(message)
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        content.append(
            {
                "type": "tool_use",
                "id": _tool_use_id(call.get("id")),
                "name": str(function.get("name") or ""),
                "input": tool_input(function.get("arguments")),
            }
        )
    reason, sequence = stop_reason(choice)
    return {
        "id": message_id(data.get("id")),
        "type": "message",
        "role": "assistant",
        "model": str(data.get("model") or ""),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": anthropic_usage(data.get("usage")),
    }


def _event(kind: str, payload: Json) -> bytes:
    return sse_event({"type": kind} | payload, kind)


class AnthropicStreamWriter:
    """Chat chunks in (the ``data`` of each event), Messages stream events out.

    Text and each tool call become content blocks, one open at a time; the chunks'
    ``finish_reason`` and usage (a stream asks for it with ``stream_options``) arrive
    before ``[DONE]`` and go out in ``message_delta``, with the input tokens too:
    ``message_start`` says 0 input tokens unless the upstream has told by then.
    """

    def __init__(self) -> None:
        self.started = False
        self.ended = False
        self.open: int | None = None  # index of the open content block
        self.open_text = False
        self.blocks = 0
        self.tools: dict[int, int] = {}  # chat tool_calls index -> content block index
        self.stop: tuple[str, str | None] = ("end_turn", None)
        self.usage: Json | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """The Messages events for one chat chunk (``[DONE]`` ends the message)."""
        if data.strip() == b"[DONE]":
            return self.finish()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []  # the provider checked its chunks; nothing to say for one that is not
        if not isinstance(chunk, dict) or self.ended:
            return []
        out = [] if self.started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = anthropic_usage(chunk["usage"])
        choice = _first_choice(chunk)
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        text = delta.get("content")
        if isinstance(text, str) and text:
            out += self._text(text)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                out += self._tool_call(call)
        if choice.get("finish_reason"):
            self.stop = stop_reason(choice)
        return out

    def finish(self) -> list[bytes]:
        """Close the last block and the message (once)."""
        if self.ended:
            return []
        out = [] if self.started else self._start({})
        out += self._close()
        reason, sequence = self.stop
        usage = self.usage or {"output_tokens": 0}
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        out.append(_event("message_delta", {"delta": delta, "usage": usage}))
        out.append(_event("message_stop", {}))
        self.ended = True
        return out

    def _start(self, chunk: Json) -> list[bytes]:
        self.started = True
        usage = chunk.get("usage")
        start_usage = anthropic_usage(usage) if isinstance(usage, dict) else {}
        message: Json = {
            "id": message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": str(chunk.get("model") or ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": start_usage.get("input_tokens", 0), "output_tokens": 0},
        }
        return [_event("message_start", {"message": message})]

    def _begin(self, block: Json) -> list[bytes]:
        out = self._close()
        self.open, self.blocks = self.blocks, self.blocks + 1
        out.append(_event("content_block_start", {"index": self.open, "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        index, self.open, self.open_text = self.open, None, False
        return [_event("content_block_stop", {"index": index})]

    def _text(self, text: str) -> list[bytes]:
        out = [] if self.open_text else self._begin({"type": "text", "text": ""})
        self.open_text = True
        assert self.open is not None
        delta = {"type": "text_delta", "text": text}
        return [*out, _event("content_block_delta", {"index": self.open, "delta": delta})]

    def _tool_call(self, call: Json) -> list[bytes]:
        position = call.get("index")
        position = position if isinstance(position, int) else len(self.tools)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        out: list[bytes] = []
        index = self.tools.get(position)
        if index is None:
            name = str(function.get("name") or "")
            block = {"type": "tool_use", "id": _tool_use_id(call.get("id")), "name": name}
            out = self._begin(block | {"input": {}})
            index = self.tools[position] = self.blocks - 1
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(_event("content_block_delta", {"index": index, "delta": delta}))
        return out
