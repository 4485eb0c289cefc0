"""``POST /v1/embeddings``: one input or a batch, to a model whose provider serves
embeddings (the OpenAI-compatible ones; the mock's are deterministic, not semantic).

The body goes upstream as sent (``dimensions``, ``encoding_format`` included); routing
reads the inputs' text as the user's turn, so decisions can route embeddings by header,
tenant or content like any request. Cost is the model's input price.
"""

from __future__ import annotations

from typing import Any

from router_proxy.config.schema import ServerConfig
from router_proxy.protocol import ChatCompletionRequest, EmbeddingRequest, texts_of
from router_proxy.server.body import validate_body
from router_proxy.server.surfaces.base import Surface, routing_request


class EmbeddingsSurface(Surface):
    name = "embeddings"
    endpoint = "embeddings"

    def parse(
        self, raw: dict[str, Any], settings: ServerConfig
    ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        request = validate_body(EmbeddingRequest, raw)
        return routing_request(request.model, "\n".join(texts_of(request.input))), raw
