"""``type: conversation``: facts about the shape of the request, not its words.

``min_turns`` / ``max_turns`` bound the number of user messages; ``tools`` asks whether the
request offers tools (``tools`` or legacy ``functions``); ``images`` whether any message
carries an image part. The signal fires when every condition given holds, and its detail
lists what was measured, e.g. ``3 user turns, tools: yes, images: no``.

Also home to the walks over a request's messages that other signals share
(``conversation_text``, ``has_images``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import RequestContext, TextScope
from router_proxy.protocol import ChatMessage
from router_proxy.signals.base import Signal, SignalResult

# Chat Completions sends `image_url`; `input_image` / `image` appear in clients that mix
# in Responses-style parts.
IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})


def _tool_call_texts(message: ChatMessage) -> list[str]:
    """Function names and argument strings of an assistant message's tool calls."""
    extra = message.model_extra or {}
    calls: list[Any] = []
    if isinstance(extra.get("tool_calls"), list):
        calls.extend(c.get("function") for c in extra["tool_calls"] if isinstance(c, dict))
    calls.append(extra.get("function_call"))  # the legacy single call
    texts: list[str] = []
    for call in calls:
        if isinstance(call, dict):
            texts.extend(v for k in ("name", "arguments") if isinstance(v := call.get(k), str))
    return texts


def conversation_text(ctx: RequestContext, scope: TextScope = "all") -> str:
    """``ctx.text(scope)``; for ``all``, plus the tool calls' names and arguments."""
    text = ctx.text(scope)
    if scope != "all":
        return text
    extra = [t for m in ctx.request.messages for t in _tool_call_texts(m)]
    return "\n".join([text, *extra]) if extra else text


def user_turns(ctx: RequestContext) -> int:
    return sum(1 for m in ctx.request.messages if m.role == "user")


def has_tools(ctx: RequestContext) -> bool:
    functions = ctx.raw_body.get("functions")
    return bool(ctx.request.tools) or (isinstance(functions, list) and bool(functions))


def has_images(ctx: RequestContext) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES
        for m in ctx.request.messages
        if isinstance(m.content, list)
        for part in m.content
    )


class ConversationSignalConfig(SignalConfigBase):
    type: Literal["conversation"]
    min_turns: int | None = Field(
        default=None, ge=0, description="at least this many user messages"
    )
    max_turns: int | None = Field(default=None, ge=0, description="at most this many user messages")
    tools: bool | None = Field(
        default=None, description="true: the request offers tools; false: it does not"
    )
    images: bool | None = Field(
        default=None, description="true: some message has an image; false: none has"
    )

    @model_validator(mode="after")
    def _has_condition(self) -> ConversationSignalConfig:
        if all(v is None for v in (self.min_turns, self.max_turns, self.tools, self.images)):
            raise ValueError(
                "a conversation signal needs at least one of min_turns, max_turns, tools, images"
            )
        if (
            self.min_turns is not None
            and self.max_turns is not None
            and self.min_turns > self.max_turns
        ):
            raise ValueError(
                f"min_turns ({self.min_turns}) is greater than max_turns ({self.max_turns}): "
                "the signal could never fire"
            )
        return self


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


class ConversationSignal(Signal[ConversationSignalConfig]):
    config_model = ConversationSignalConfig
    cost_rank = 1

    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        config = self.config
        turns, tools, images = user_turns(ctx), has_tools(ctx), has_images(ctx)
        plural = "" if turns == 1 else "s"
        facts = f"{turns} user turn{plural}, tools: {_yes(tools)}, images: {_yes(images)}"
        failed: list[str] = []
        if config.min_turns is not None and turns < config.min_turns:
            failed.append(f"fewer than {config.min_turns} turns")
        if config.max_turns is not None and turns > config.max_turns:
            failed.append(f"more than {config.max_turns} turns")
        if config.tools is not None and tools != config.tools:
            failed.append(f"tools {'missing' if config.tools else 'present'}")
        if config.images is not None and images != config.images:
            failed.append(f"images {'missing' if config.images else 'present'}")
        if failed:
            return SignalResult(False, False, f"{facts} ({'; '.join(failed)})")
        return SignalResult(True, True, facts)
