"""A conversation's history made valid for a model other than the one that wrote it
(a fallback, a context overflow, a session re-bound to another model).

What another model wrote that the new one may refuse or misread:

- reasoning the old model left in its turns: chat fields that reasoning servers and SDKs
  add to assistant messages (``reasoning_content`` from DeepSeek, vLLM and Qwen;
  ``reasoning`` and ``reasoning_details`` from OpenRouter; ``thinking_blocks`` from
  LiteLLM) and thinking parts in their content. They are the old model's private
  reasoning, meaningless (and often refused) elsewhere: dropped. Anthropic's own
  thinking blocks are kept in a Messages body going to an Anthropic model: their
  signatures are valid across Claude models, and a tool loop needs them. Going to a
  chat model, the Messages translation drops them already.
- tool-call ids in another provider's format: Anthropic takes ``^[a-zA-Z0-9_-]+$``, OpenAI
  at most 40 characters; Kimi's ``functions.get_weather:0`` or a long Gemini id fails
  one or both. ``portable_tool_id`` maps such an id to ``call_<hash>``, the same for the
  call and its result (and on every turn: it is a function of the id alone); ids that
  are already portable stay as they are.
- a tool loop with extended thinking on, whose last assistant turn came from a model
  without thinking blocks: Anthropic refuses it ("a final assistant message must start
  with a thinking block"); thinking is turned off for that call.

Each function returns the body (the same object when nothing changed) and what it
changed, for the log line.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from router_proxy.translate.common import Json

# Fields reasoning servers and SDKs add to assistant messages in chat format.
REASONING_FIELDS = (
    "reasoning_content",
    "reasoning",
    "reasoning_details",
    "thinking_blocks",
    "thinking",
)
REASONING_PARTS = frozenset({"thinking", "redacted_thinking", "reasoning"})
THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_PORTABLE_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")

REASONING = "reasoning"
TOOL_IDS = "tool call ids"
THINKING = "thinking"


def portable_tool_id(value: str) -> str:
    """``value`` if every provider takes it as a tool-call id, else ``call_<hash>``."""
    if _PORTABLE_ID.fullmatch(value):
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=12)
    return "call_" + digest.hexdigest()


def _portable(value: Any, changed: set[str]) -> Any:
    if not isinstance(value, str):
        return value
    portable = portable_tool_id(value)
    if portable != value:
        changed.add(TOOL_IDS)
    return portable


def _reasoning_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") in REASONING_PARTS


def _assistant(message: Json, changed: set[str]) -> Json:
    out = message
    dropped = [key for key in REASONING_FIELDS if key in message]
    if dropped:
        out = {k: v for k, v in message.items() if k not in dropped}
        changed.add(REASONING)
    content = out.get("content")
    if isinstance(content, list):
        kept = [p for p in content if not _reasoning_part(p)]
        if len(kept) != len(content):
            out = out | {"content": kept or ("" if not out.get("tool_calls") else None)}
            changed.add(REASONING)
    calls = out.get("tool_calls")
    if isinstance(calls, list):
        fixed = [
            c | {"id": _portable(c["id"], changed)} if isinstance(c, dict) and "id" in c else c
            for c in calls
        ]
        if fixed != calls:
            out = out | {"tool_calls": fixed}
    return out


def chat_for_switch(body: Json) -> tuple[Json, list[str]]:
    """A chat body (``messages``) made valid for a model that did not write it."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body, []
    changed: set[str] = set()
    out: list[Any] = []
    for message in messages:
        if not isinstance(message, dict):
            out.append(message)
        elif message.get("role") == "assistant":
            out.append(_assistant(message, changed))
        elif message.get("role") == "tool" and "tool_call_id" in message:
            call_id = _portable(message["tool_call_id"], changed)
            same = call_id == message["tool_call_id"]
            out.append(message if same else message | {"tool_call_id": call_id})
        else:
            out.append(message)
    if not changed:
        return body, []
    return body | {"messages": out}, sorted(changed)


def _block_ids(content: Any, changed: set[str]) -> Any:
    if not isinstance(content, list):
        return content
    out = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_use" and "id" in block:
            block = block | {"id": _portable(block["id"], changed)}
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            block = block | {"tool_use_id": _portable(block.get("tool_use_id"), changed)}
        out.append(block)
    return out


def _thinking_on(body: Json) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled")


def _tool_loop_without_thinking(messages: list[Any]) -> bool:
    """The request continues a tool loop (it ends with tool results) whose assistant
    turn does not start with a thinking block."""
    if len(messages) < 2 or not isinstance(messages[-1], dict):
        return False
    last = messages[-1].get("content")
    if not isinstance(last, list) or not any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last
    ):
        return False
    turn = messages[-2].get("content") if isinstance(messages[-2], dict) else None
    if not isinstance(turn, list) or not turn:
        return True
    first = turn[0]
    return not (isinstance(first, dict) and first.get("type") in THINKING_BLOCKS)


def messages_for_switch(body: Json) -> tuple[Json, list[str]]:
    """An Anthropic Messages body made valid for an Anthropic model that did not write
    all of it: portable tool ids, and thinking off for a tool loop another model
    started without thinking."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body, []
    changed: set[str] = set()
    out = [
        m | {"content": _block_ids(m.get("content"), changed)} if isinstance(m, dict) else m
        for m in messages
    ]
    result = body | {"messages": out} if TOOL_IDS in changed else body
    if _thinking_on(body) and _tool_loop_without_thinking(out):
        result = {k: v for k, v in result.items() if k != "thinking"}
        changed.add(THINKING)
    return result, sorted(changed)
