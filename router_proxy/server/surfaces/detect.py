"""The dry run (``POST /v1/route``) reads either API's body: a chat request's
``messages`` or a Responses request's ``input``; routing sees the same canonical request
either way."""

from __future__ import annotations

from typing import Any

from router_proxy.config.schema import ServerConfig
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.server.surfaces.base import Surface
from router_proxy.server.surfaces.chat import CHAT
from router_proxy.server.surfaces.responses import ResponsesSurface


class EitherBodySurface(Surface):
    name = "route"

    def parse(
        self, raw: dict[str, Any], settings: ServerConfig
    ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        if "input" in raw and "messages" not in raw:
            return ResponsesSurface().parse(raw, settings)
        return CHAT.parse(raw, settings)


EITHER_BODY = EitherBodySurface()
