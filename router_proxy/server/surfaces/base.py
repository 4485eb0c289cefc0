"""The interface of an API surface: what differs between the APIs clients speak.

The canonical request is an OpenAI chat completion (``ChatCompletionRequest`` plus the
JSON body forwarded upstream); a surface whose clients speak something else translates
both ways here. Everything else (admission, routing, fallback, accounting) is the
engine's and the same for every surface.

One instance serves one request (the routes make one each): a surface may keep what
``parse`` read for ``render`` and ``translate_stream`` (the Responses API echoes the
request's settings in its answer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from typing import Any, ClassVar

from fastapi.responses import Response

from router_proxy.config.schema import ServerConfig
from router_proxy.errors import GatewayError
from router_proxy.protocol import ChatCompletionRequest, ChatMessage, Endpoint
from router_proxy.providers.base import Completion
from router_proxy.server.errors import error_response
from router_proxy.translate.common import sse_event


def routing_request(model: str, text: str, *, stream: bool = False) -> ChatCompletionRequest:
    """The canonical request routing reads for an API that is not chat: ``text`` as the
    user's one turn (a prompt, an input to embed)."""
    message = ChatMessage(role="user", content=text)
    return ChatCompletionRequest(model=model, messages=[message], stream=stream)


class Surface(ABC):
    name: ClassVar[str]  # in the log line and metrics: chat, responses, ...
    # The upstream API the body from ``parse`` is for.
    endpoint: ClassVar[Endpoint] = "chat"
    # The surface's own wire format, when some providers speak it natively: the client's
    # body then goes to them untranslated, and their answer comes back as it is.
    native: ClassVar[str | None] = None

    # What a translation to chat leaves out of this request (set by ``parse``): named in
    # the log line when a translated call answers (a native one keeps everything).
    dropped: tuple[str, ...] = ()

    def credential(self, headers: Mapping[str, str]) -> str | None:
        """The client key as an ``Authorization`` value (``Bearer KEY``)."""
        return headers.get("authorization")

    @abstractmethod
    def parse(
        self, raw: dict[str, Any], settings: ServerConfig
    ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        """The canonical request and the chat-format body to send upstream; raises
        InvalidRequestError naming the bad field."""

    def response_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """The ``x-router-*`` headers of an answer or an error, plus the surface's own
        (e.g. the request id under the name its SDK reads)."""
        return headers

    def render(self, completion: Completion) -> bytes:
        """The answer in this surface's shape."""
        return completion.body

    def translate_stream(self, events: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        """The stream's events in this surface's shape."""
        return events

    def error_event(self, error: GatewayError) -> bytes:
        """The last event of a stream that failed after its first byte."""
        return sse_event(error.to_dict())

    def error_response(self, error: GatewayError, headers: dict[str, str]) -> Response:
        return error_response(error, headers)
