"""``POST /v1/chat/completions``: the canonical shape itself, so nothing to translate."""

from __future__ import annotations

from typing import Any

from router_proxy.config.schema import ServerConfig
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.server.body import parse_chat_request
from router_proxy.server.surfaces.base import Surface


class ChatSurface(Surface):
    name = "chat"

    def parse(
        self, raw: dict[str, Any], settings: ServerConfig
    ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        # The client's JSON goes upstream as sent: unknown parameters survive.
        return parse_chat_request(raw, settings.max_messages), raw


CHAT = ChatSurface()
