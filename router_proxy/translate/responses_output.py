"""A chat completion as an OpenAI Responses API ``response`` object, and the pieces the
stream translation (responses_stream.py) builds the same object from.

The object carries what the official SDK reads (``id``, ``object``, ``created_at``,
``status``, ``output``, ``usage``, ...) and echoes the request's settings the way OpenAI
does (``instructions``, ``tools``, ``tool_choice``, ``temperature``, ``text``, ...).
``store`` is always false: this gateway keeps nothing.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from router_proxy.ids import unique_hex
from router_proxy.translate.responses_schema import ResponsesRequest

Json = dict[str, Any]

# finish_reason -> (status, incomplete_details.reason)
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    """``resp_...``, ``msg_...``, ``fc_...``: unique, like OpenAI's."""
    return f"{prefix}_{unique_hex()}"


def echo_of(request: ResponsesRequest) -> Json:
    """The request's settings as the response repeats them (computed once per request)."""
    text = request.text.model_dump(by_alias=True, exclude_none=True) if request.text else {}
    tool_choice: Any = request.tool_choice or "auto"
    if not isinstance(tool_choice, str):
        tool_choice = tool_choice.model_dump()
    echo: Json = {
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata or {},
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": None,
        "store": False,
        "temperature": request.temperature,
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": tool_choice,
        "tools": [tool.model_dump(by_alias=True) for tool in request.tools or ()],
        "top_p": request.top_p,
        "truncation": "disabled",
        "user": request.user,
    }
    if request.reasoning is not None:
        echo["reasoning"] = {"effort": request.reasoning.effort, "summary": None}
    return echo


def envelope(response_id: str, created_at: int, model: str, echo: Json) -> Json:
    """A response in progress: no output, no usage yet."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "usage": None,
        **echo,
    }


def finish(response: Json, finish_reason: str | None, usage: Json | None) -> Json:
    """``response`` completed (or incomplete) with its usage; returns it."""
    reason = _INCOMPLETE.get(finish_reason or "")
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    response["completed_at"] = int(time.time())
    response["usage"] = usage
    return response


def item_status(finish_reason: str | None) -> str:
    return "incomplete" if finish_reason in _INCOMPLETE else "completed"


def text_part(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(refusal: str) -> Json:
    return {"type": "refusal", "refusal": refusal}


def message_item(item_id: str, parts: list[Json], status: str) -> Json:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": parts,
    }


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Json:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def usage_of(raw: Any) -> Json | None:
    """Chat usage (prompt/completion tokens) in the Responses shape."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = _count(raw.get("prompt_tokens")), _count(raw.get("completion_tokens"))
    prompt_details = raw.get("prompt_tokens_details")
    completion_details = raw.get("completion_tokens_details")
    cached = _count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0
    reasoning = (
        _count(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else 0
    )
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": _count(raw.get("total_tokens")) or prompt + completion,
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def from_chat_completion(body: bytes, echo: Json, model: str) -> Json:
    """The whole answer: the first choice's text and tool calls as output items.
    ``model`` is the request's, for an upstream answer that names none."""
    data: Any = orjson.loads(body)
    data = data if isinstance(data, dict) else {}
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    finish_reason = choice.get("finish_reason")
    finish_reason = finish_reason if isinstance(finish_reason, str) else None
    created = data.get("created")
    response = envelope(
        new_id("resp"),
        created if isinstance(created, int) else int(time.time()),
        data.get("model") if isinstance(data.get("model"), str) else model,
        echo,
    )
    response["output"] = output_items(message, item_status(finish_reason))
    return finish(response, finish_reason, usage_of(data.get("usage")))


def output_items(message: Json, status: str) -> list[Json]:
    calls = message.get("tool_calls")
    calls = calls if isinstance(calls, list) else []
    parts: list[Json] = []
    content = message.get("content")
    if isinstance(content, str) and (content or not calls):  # "" beside calls says nothing
        parts.append(text_part(content))
    if isinstance(message.get("refusal"), str):
        parts.append(refusal_part(message["refusal"]))
    items = [message_item(new_id("msg"), parts, status)] if parts else []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = call.get("id") if isinstance(call.get("id"), str) else new_id("call")
        items.append(
            call_item(
                new_id("fc"),
                call_id,
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
                "completed",
            )
        )
    return items
