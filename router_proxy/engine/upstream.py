"""Calls one model through its provider: the call's timeouts (the model's, cut to the
request's deadline) and, for a stream, the wait for its first event: until that event has
gone to the client, a failure can still fall back to the next candidate."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from router_proxy.config.schema import ModelConfig
from router_proxy.errors import GatewayError, UpstreamError, UpstreamTimeoutError
from router_proxy.protocol import Endpoint
from router_proxy.providers.base import ChatStream, Completion, Provider, UpstreamCall


class Upstream:
    def __init__(self, models: Mapping[str, ModelConfig], providers: Mapping[str, Provider]):
        # Per model, resolved once per config: its provider and the name it knows.
        self._targets = {
            name: (providers[model.provider], model.upstream_model or name, model)
            for name, model in models.items()
        }

    def serves(self, model: str, endpoint: Endpoint) -> bool:
        """Whether ``model``'s provider serves ``endpoint`` (every one serves chat)."""
        return endpoint in self._targets[model][0].endpoints

    def call(
        self,
        body: dict[str, Any],
        model: str,
        left: float | None,
        request_id: str,
        endpoint: Endpoint = "chat",
    ) -> tuple[Provider, UpstreamCall]:
        provider, upstream_model, config = self._targets[model]
        timeouts = config.timeouts.within(left)
        call = UpstreamCall(model, upstream_model, body, timeouts, request_id, endpoint)
        return provider, call

    async def complete(
        self,
        body: dict[str, Any],
        model: str,
        left: float | None,
        request_id: str,
        endpoint: Endpoint = "chat",
    ) -> Completion:
        provider, call = self.call(body, model, left, request_id, endpoint)
        return await provider.complete(call)

    async def open_stream(
        self,
        body: dict[str, Any],
        model: str,
        left: float | None,
        request_id: str,
        endpoint: Endpoint = "chat",
    ) -> tuple[ChatStream, bytes]:
        """The opened stream and its first event."""
        provider, call = self.call(body, model, left, request_id, endpoint)
        stream = await provider.stream(call)
        try:
            async with asyncio.timeout(call.timeouts.idle):
                first = await anext(stream.chunks)
        except TimeoutError as exc:
            await stream.chunks.aclose()
            raise UpstreamTimeoutError(f"model '{model}' sent no event in time") from exc
        except (GatewayError, StopAsyncIteration) as exc:
            await stream.chunks.aclose()
            if isinstance(exc, GatewayError):
                raise
            raise UpstreamError(f"model '{model}' ended its stream at once") from exc
        return stream, first
