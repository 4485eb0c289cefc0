"""The dry run (``POST /v1/route``, ``router-proxy explain --body``) reads any surface's
body: named (``?surface=messages``) or recognised by its shape. Routing sees the same
canonical request whichever API the body speaks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router_proxy.config.schema import ServerConfig
from router_proxy.errors import InvalidRequestError
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.server.surfaces.base import Surface
from router_proxy.server.surfaces.chat import ChatSurface
from router_proxy.server.surfaces.completions import CompletionsSurface
from router_proxy.server.surfaces.embeddings import EmbeddingsSurface
from router_proxy.server.surfaces.messages import MessagesSurface
from router_proxy.server.surfaces.responses import ResponsesSurface

SURFACES: dict[str, type[Surface]] = {
    "chat": ChatSurface,
    "responses": ResponsesSurface,
    "messages": MessagesSurface,
    "completions": CompletionsSurface,
    "embeddings": EmbeddingsSurface,  # its body looks like a Responses one: name it
}
# Fields only a Messages body has (a chat body has none of them).
_MESSAGES_ONLY = ("system", "stop_sequences", "top_k", "thinking")


def recognise(raw: dict[str, Any]) -> type[Surface]:
    """A text completion's body has a text ``prompt`` (or token ids) and no ``messages``,
    a Responses body ``input``; a Messages body has one of the fields only it has;
    anything else is read as chat. A text ``prompt`` is looked at first: a Responses
    body's own ``prompt`` is a stored template, an object."""
    if "messages" not in raw:
        if isinstance(raw.get("prompt"), str | list):
            return CompletionsSurface
        if "input" in raw:
            return ResponsesSurface
        if "prompt" in raw:
            return CompletionsSurface  # which says what a prompt must be
    if any(key in raw for key in _MESSAGES_ONLY):
        return MessagesSurface
    return ChatSurface


class AnyBodySurface(Surface):
    name = "route"

    def __init__(self, named: str | None = None) -> None:
        if named is not None and named not in SURFACES:
            raise InvalidRequestError(
                f"Unknown surface '{named}'; one of: {', '.join(SURFACES)}", param="surface"
            )
        self.named = named

    def credential(self, headers: Mapping[str, str]) -> str | None:
        """Any surface's way of sending the key (an Anthropic client's ``x-api-key``)."""
        return MessagesSurface().credential(headers)

    def parse(
        self, raw: dict[str, Any], settings: ServerConfig
    ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        surface = SURFACES[self.named] if self.named is not None else recognise(raw)
        return surface().parse(raw, settings)
