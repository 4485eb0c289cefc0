"""The OpenAI Responses API request (``POST /v1/responses``), validated, and the same
request as the canonical chat completion.

Translated into chat:
    model (as sent: auto, a decision or a model), input (a string, or items: ``message``
    with role user/system/developer/assistant and content as a string or
    ``input_text``/``input_image``/``output_text``/``refusal`` parts; ``function_call`` ->
    an assistant message's tool_calls; ``function_call_output`` -> a tool message),
    instructions (-> a system message first), tools (function tools only, flat ->
    nested), tool_choice, parallel_tool_calls (only with tools), max_output_tokens
    (-> max_tokens), temperature, top_p, text.format (-> response_format), stream (with
    ``stream_options.include_usage`` so the last event can report usage), user,
    reasoning.effort (-> reasoning_effort).
Echoed in the response only, never sent upstream: metadata.
Accepted and dropped (nothing to translate them into): store (nothing is stored, so a
response cannot be fetched, listed or continued later), include, truncation,
max_tool_calls, stream_options, service_tier, prompt_cache_key, safety_identifier,
top_logprobs, text.verbosity, reasoning.summary, and any parameter not named here.
Refused with a 400: previous_response_id and conversation (this gateway keeps no
conversation state), background: true (nothing to poll later), prompt (stored prompt
templates), and tools other than functions (web_search, file_search, ...).

Errors name the Responses field (``input[2].content``), never the chat field it becomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from router_proxy.config.errors import format_path
from router_proxy.errors import InvalidRequestError
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.translate.responses_schema import (
    LABELS,
    ResponsesFormatJsonObject,
    ResponsesFormatJsonSchema,
    ResponsesFunctionCall,
    ResponsesFunctionTool,
    ResponsesInputImage,
    ResponsesMessage,
    ResponsesRefusal,
    ResponsesRequest,
    ResponsesTextConfig,
    ResponsesToolChoiceFunction,
)


@dataclass(frozen=True, slots=True)
class Translated:
    request: ResponsesRequest  # what the answer echoes
    chat: ChatCompletionRequest  # what routing reads
    body: dict[str, Any]  # the chat JSON sent upstream


def to_chat(raw: dict[str, Any], max_messages: int) -> Translated:
    """The canonical request for a Responses body; raises InvalidRequestError naming the
    Responses field at fault."""
    _refuse_state(raw)
    _check_input(raw, max_messages)
    _check_tools(raw)
    try:
        request = ResponsesRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, raw) from None
    body = chat_body(request)
    return Translated(request, ChatCompletionRequest.model_validate(body), body)


def chat_body(request: ResponsesRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "messages": chat_messages(request)}
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    for name, value in (
        ("max_tokens", request.max_output_tokens),
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("user", request.user),
        ("reasoning_effort", request.reasoning.effort if request.reasoning else None),
        ("response_format", _response_format(request.text)),
    ):
        if value is not None:
            body[name] = value
    if request.tools:
        body["tools"] = [_chat_tool(tool) for tool in request.tools]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None:
        body["tool_choice"] = _chat_tool_choice(request.tool_choice)
    return body


def chat_messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.instructions is not None:
        messages.append({"role": "system", "content": request.instructions})
    if isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})
        return messages
    for item in request.input:
        if isinstance(item, ResponsesMessage):
            content = _chat_content(item.content)
            if item.role != "user" and isinstance(content, list) and _all_text(content):
                content = "\n".join(part["text"] for part in content)  # the widest support
            messages.append({"role": item.role, "content": content})
        elif isinstance(item, ResponsesFunctionCall):
            _add_tool_call(messages, item)
        else:
            text = item.output if isinstance(item.output, str) else _text_of(item.output)
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": text})
    return messages


def _add_tool_call(messages: list[dict[str, Any]], item: ResponsesFunctionCall) -> None:
    """Consecutive calls (and the assistant text before them) are one assistant turn."""
    function = {"name": item.name, "arguments": item.arguments}
    call = {"id": item.call_id, "type": "function", "function": function}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _chat_content(content: str | list[Any]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, ResponsesInputImage):
            image: dict[str, Any] = {"url": part.image_url}
            if part.detail is not None:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
        elif isinstance(part, ResponsesRefusal):
            parts.append({"type": "text", "text": part.refusal})
        else:
            parts.append({"type": "text", "text": part.text})
    return parts


def _all_text(parts: list[dict[str, Any]]) -> bool:
    return all(part["type"] == "text" for part in parts)


def _text_of(parts: list[Any]) -> str:
    texts = (getattr(p, "text", None) or getattr(p, "refusal", None) for p in parts)
    return "\n".join(t for t in texts if t)


# Only the fields chat knows: an unknown one would be refused upstream.
_FUNCTION_FIELDS = {"name", "description", "parameters", "strict"}
_SCHEMA_FIELDS = {"name", "schema_", "description", "strict"}


def _chat_tool(tool: ResponsesFunctionTool) -> dict[str, Any]:
    function = tool.model_dump(include=_FUNCTION_FIELDS, exclude_none=True)
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | ResponsesToolChoiceFunction) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice.name}}


def _response_format(text: ResponsesTextConfig | None) -> dict[str, Any] | None:
    spec = text.format if text is not None else None
    if isinstance(spec, ResponsesFormatJsonSchema):
        schema = spec.model_dump(by_alias=True, include=_SCHEMA_FIELDS, exclude_none=True)
        return {"type": "json_schema", "json_schema": schema}
    if isinstance(spec, ResponsesFormatJsonObject):
        return {"type": "json_object"}
    return None  # text: chat's default


# Checks before validation, for messages that say what to do instead.
_STATEFUL = {
    "previous_response_id": "This gateway does not store responses, so "
    "'previous_response_id' cannot be resolved: send the whole conversation in 'input' "
    "(earlier output items included) instead.",
    "conversation": "This gateway does not store conversations: send the whole "
    "conversation in 'input' instead of 'conversation'.",
    "prompt": "Stored prompt templates ('prompt') are not supported by this gateway: send "
    "'instructions' and 'input' instead.",
}


def _refuse_state(raw: dict[str, Any]) -> None:
    for param, message in _STATEFUL.items():
        if raw.get(param) is not None:
            raise InvalidRequestError(message, param=param, code="unsupported_parameter")
    if raw.get("background") is True:
        raise InvalidRequestError(
            "Background responses are not supported: this gateway stores nothing to poll "
            "later. Leave 'background' unset (or false).",
            param="background",
            code="unsupported_parameter",
        )


def _check_input(raw: dict[str, Any], max_messages: int) -> None:
    value = raw.get("input")
    if value is None:
        raise InvalidRequestError("Missing required parameter: 'input'.", param="input")
    if not isinstance(value, str | list):
        raise InvalidRequestError(
            f"Invalid type for 'input': expected a string or a list of input items, not "
            f"{_json_type(value)}.",
            param="input",
        )
    if value == []:
        raise InvalidRequestError(
            "Invalid value for 'input': the list is empty; send at least one input item.",
            param="input",
        )
    if isinstance(value, list) and len(value) > max_messages:
        raise InvalidRequestError(
            f"Invalid value for 'input': {len(value)} items is more than the limit of "
            f"{max_messages}",
            param="input",
            code="too_many_messages",
        )


def _check_tools(raw: dict[str, Any]) -> None:
    tools = raw.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind != "function":
            raise InvalidRequestError(
                f"Invalid value for 'tools[{i}].type': {kind!r} is not supported. This "
                "gateway answers through chat completions, which call function tools "
                "only (type 'function').",
                param=f"tools[{i}].type",
                code="unsupported_tool",
            )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an object" if isinstance(value, dict) else "null"


def _invalid(exc: ValidationError, raw: dict[str, Any]) -> InvalidRequestError:
    """The most specific problem (the longest path into the request), in words."""
    found: dict[str, list[str]] = {}
    for err in exc.errors():
        kind = err["type"]
        path = _path(err["loc"], raw, keep_last=kind == "missing")
        if kind == "union_tag_invalid":
            path += ("type",)
            tag = err["input"].get("type") if isinstance(err["input"], dict) else None
            expected = err.get("ctx", {}).get("expected_tags", "")
            message = f"{tag!r} is not supported; expected one of: {expected}"
        elif kind == "union_tag_not_found":
            message = "an object with a supported 'type' is required"
        else:
            message = err["msg"]
        found.setdefault(format_path(path), []).append(message)
    param = max(found, key=lambda p: (p.count(".") + p.count("["), len(p)))
    messages = list(dict.fromkeys(found[param]))
    if messages == ["Field required"]:
        return InvalidRequestError(f"Missing required parameter: '{param}'.", param=param)
    # The union's members, one after the other: "should be a valid string or a valid list".
    said = messages[0] + "".join(" or " + m.removeprefix("Input should be ") for m in messages[1:])
    return InvalidRequestError(f"Invalid value for '{param}': {said}", param=param)


def _path(loc: tuple[int | str, ...], raw: Any, *, keep_last: bool) -> tuple[int | str, ...]:
    """``loc`` without union labels: a part is a label where it is not a key (or index)
    of the request at that point (but a missing field's name is the last part)."""
    out: list[int | str] = []
    node: Any = raw
    for i, part in enumerate(loc):
        if _has(node, part):
            node = node[part]
        elif isinstance(part, str) and (part in LABELS or "[" in part):
            if not (keep_last and i == len(loc) - 1):
                continue
            node = None
        else:
            node = None
        out.append(part)
    return tuple(out)


def _has(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
