"""``POST /v1/responses``: the OpenAI Responses API over the chat engine.

The request becomes a chat completion (translate/responses_request.py says field by field
what is translated, dropped or refused); the answer comes back as a ``response`` object
(translate/responses_output.py) or as the Responses stream's typed events
(translate/responses_stream.py). Nothing is stored: ``previous_response_id`` is refused
and ``store: true`` changes nothing, so clients send the whole conversation each time.

One instance serves one request: the answer echoes the request's settings
(``instructions``, ``tools``, ``temperature``, ...), which ``parse`` keeps for ``render``
and ``translate_stream``. The route builds it per request (``ResponsesSurface()``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson

from router_proxy.config.schema import ServerConfig
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.providers.base import Completion
from router_proxy.server.surfaces.base import Surface
from router_proxy.translate.responses_output import Json, echo_of, from_chat_completion
from router_proxy.translate.responses_request import to_chat
from router_proxy.translate.responses_stream import ResponsesStream


class ResponsesSurface(Surface):
    name = "responses"
    native = "openai.responses"

    def __init__(self) -> None:
        self._echo: Json = {}
        self._model = ""

    def parse(
        self, raw: dict[str, Any], settings: ServerConfig
    ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        translated = to_chat(raw, settings.max_messages)
        self._echo = echo_of(translated.request)
        self._model = translated.request.model
        return translated.chat, translated.body

    def render(self, completion: Completion) -> bytes:
        return orjson.dumps(from_chat_completion(completion.body, self._echo, self._model))

    async def translate_stream(
        self, events: AsyncGenerator[bytes, None]
    ) -> AsyncGenerator[bytes, None]:
        """A failure after the first byte arrives as the base class's error event
        (``data: {"error": ...}``) and leaves as ``response.failed``."""
        stream = ResponsesStream(self._echo, self._model)
        async with aclosing(events):  # closing this generator closes the relay too
            async for piece in events:
                out = stream.feed(piece)
                if out:
                    yield out
        out = stream.close()
        if out:
            yield out
