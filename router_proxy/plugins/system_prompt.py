"""``{system_prompt: TEXT}`` or ``{system_prompt: {text, mode}}``: give the upstream a
system prompt. ``prepend`` (default) puts it before the client's messages, ``replace``
drops the client's system and developer messages first."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.plugins.base import Body, Plugin

_SYSTEM_ROLES = frozenset({"system", "developer"})


class SystemPromptOptions(StrictModel):
    text: str = Field(min_length=1)
    mode: Literal["prepend", "replace"] = "prepend"


class SystemPromptPlugin(Plugin):
    name = "system_prompt"
    config_model = str | SystemPromptOptions

    def __init__(self, config: str | SystemPromptOptions) -> None:
        options = SystemPromptOptions(text=config) if isinstance(config, str) else config
        super().__init__(options)
        self.options = options

    def apply(self, body: Body, ctx: RequestContext) -> Body:
        if ctx.endpoint != "chat":  # a text completion or an embedding has no system turn
            return body
        messages = body.get("messages") or []
        if self.options.mode == "replace":
            messages = [m for m in messages if m.get("role") not in _SYSTEM_ROLES]
        system = {"role": "system", "content": self.options.text}
        return {**body, "messages": [system, *messages]}
