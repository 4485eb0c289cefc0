"""``POST /v1/completions``: legacy text completions (code completion, fill-in-the-middle
with ``suffix``), plain and streamed.

The body goes upstream as sent to a provider that serves text completions (the
OpenAI-compatible ones: OpenAI, vLLM, Ollama, ...; the mock); routing reads the prompt as
the user's turn. A decision whose candidates cannot serve it answers 400.
"""

from __future__ import annotations

from typing import Any

from router_proxy.config.schema import ServerConfig
from router_proxy.protocol import ChatCompletionRequest, CompletionRequest, texts_of
from router_proxy.server.body import validate_body
from router_proxy.server.surfaces.base import Surface, routing_request


class CompletionsSurface(Surface):
    name = "completions"
    endpoint = "completions"

    def parse(
        self, raw: dict[str, Any], settings: ServerConfig
    ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        request = validate_body(CompletionRequest, raw)
        prompt = "\n".join(texts_of(request.prompt))
        return routing_request(request.model, prompt, stream=request.stream), raw
