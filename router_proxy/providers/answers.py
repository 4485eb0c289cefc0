"""What a success status must carry to count as an answer.

An upstream that says 200 and sends an error object, a JSON array or some other shape
has failed, not answered: the call is an upstream failure like a 500 (fallback to the
next candidate, the model's breaker and error metric; 502 when none is left), and the
client never gets an answer its SDK cannot read (``choices=None``).

A few type checks on the JSON the call has already parsed, one per wire format; nothing
is validated field by field, so fields the gateway does not know pass through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from router_proxy.errors import UpstreamError
from router_proxy.providers.http import upstream_error_message
from router_proxy.translate.common import scrub

Json = dict[str, Any]


def _has_choices(data: Json) -> bool:
    choices = data.get("choices")
    return bool(choices) and isinstance(choices, list) and all(type(c) is dict for c in choices)


# wire format -> (the check, what it expects, said in an error)
_ANSWERS: dict[str, tuple[Callable[[Json], bool], str]] = {
    "chat": (_has_choices, "a chat.completion with choices"),
    "completions": (_has_choices, "a text_completion with choices"),
    "embeddings": (lambda d: isinstance(d.get("data"), list), "a list of embeddings ('data')"),
    "anthropic.messages": (
        lambda d: d.get("type") == "message" and isinstance(d.get("content"), list),
        "a Messages 'message' with content",
    ),
    "openai.responses": (lambda d: d.get("object") == "response", "a 'response' object"),
}


def check_answer(
    data: Any, wire_format: str, *, body: bytes, model: str, secrets: Iterable[str]
) -> None:
    """Raise UpstreamError unless ``data`` (``body`` parsed) is an answer in
    ``wire_format`` (an endpoint: chat, completions, embeddings; or a native format)."""
    check, expected = _ANSWERS[wire_format]
    if isinstance(data, dict) and not _is_error(data) and check(data):
        return
    if isinstance(data, dict) and _is_error(data):
        message = scrub(upstream_error_message(body), secrets)
        raise UpstreamError(f"model '{model}' answered a success status with an error: {message}")
    shape = scrub(_shape(data), secrets)
    raise UpstreamError(
        f"model '{model}' answered a success status with {shape} instead of {expected}"
    )


def _is_error(data: Json) -> bool:
    # OpenAI's {"error": {...}}, Anthropic's {"type": "error", ...}, vLLM's unwrapped
    # {"object": "error", ...}; a Responses object says "error": null when it has none.
    return data.get("error") is not None or "error" in (data.get("type"), data.get("object"))


def _shape(data: Any) -> str:
    if isinstance(data, dict):
        keys = ", ".join(repr(k[:40]) for k in list(data)[:5])
        return f"an object with keys {keys}" if keys else "an empty object"
    kinds = {list: "a JSON array", str: "a JSON string", bool: "a JSON boolean"}
    return kinds.get(type(data), "a JSON number" if isinstance(data, int | float) else "null")
