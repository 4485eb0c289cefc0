"""Calls one model through its provider: the call's timeouts (the model's, cut to the
request's deadline) and, for a stream, the wait for its first event: until that event has
gone to the client, a failure can still fall back to the next candidate. Whatever a
provider raises while reading an answer is an upstream failure (``unreadable``), never a
500 of the gateway's own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router_proxy.config.schema import ModelConfig
from router_proxy.errors import GatewayError, UpstreamError, UpstreamTimeoutError
from router_proxy.protocol import Endpoint
from router_proxy.providers.base import ChatStream, Completion, Provider, UpstreamCall

logger = logging.getLogger("router_proxy.engine")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What goes upstream for one request: the body for ``endpoint`` (chat-shaped for
    chat), and the client's own body when it spoke another wire format (``native``),
    sent instead to a model whose provider speaks that format."""

    body: dict[str, Any]
    endpoint: Endpoint = "chat"
    native_format: str | None = None
    native_body: dict[str, Any] | None = None


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

    def native(self, out: Outgoing, model: str) -> bool:
        """Whether ``model`` gets the client's own body (its provider speaks that format)."""
        return out.native_body is not None and self._targets[model][0].speaks(
            out.native_format or ""
        )

    def call(
        self, out: Outgoing, model: str, left: float | None, request_id: str
    ) -> tuple[Provider, UpstreamCall]:
        provider, upstream_model, config = self._targets[model]
        timeouts = config.timeouts.within(left)
        if out.native_body is not None and provider.speaks(out.native_format or ""):
            body, native = out.native_body, True
        else:
            body, native = out.body, False
        call = UpstreamCall(model, upstream_model, body, timeouts, request_id, out.endpoint, native)
        return provider, call

    async def complete(
        self, out: Outgoing, model: str, left: float | None, request_id: str
    ) -> Completion:
        provider, call = self.call(out, model, left, request_id)
        try:
            return await provider.complete(call)
        except GatewayError:
            raise
        except Exception as exc:
            raise unreadable(model, exc) from exc

    async def open_stream(
        self, out: Outgoing, model: str, left: float | None, request_id: str
    ) -> tuple[ChatStream, bytes, float]:
        """The opened stream, its first event, and the loop time its call must end by
        (the model's ``total``, whatever the client does: ``EventStreamResponse``)."""
        provider, call = self.call(out, model, left, request_id)
        deadline = asyncio.get_running_loop().time() + call.timeouts.total
        try:
            stream = await provider.stream(call)
        except GatewayError:
            raise
        except Exception as exc:
            raise unreadable(model, exc) from exc
        try:
            async with asyncio.timeout(call.timeouts.idle):
                first = await anext(stream.chunks)
        except TimeoutError as exc:
            await stream.chunks.aclose()
            raise UpstreamTimeoutError(f"model '{model}' sent no event in time") from exc
        except GatewayError:
            await stream.chunks.aclose()
            raise
        except StopAsyncIteration as exc:
            await stream.chunks.aclose()
            raise UpstreamError(f"model '{model}' ended its stream at once") from exc
        except Exception as exc:
            await stream.chunks.aclose()
            raise unreadable(model, exc) from exc
        return stream, first, deadline


def unreadable(model: str, exc: Exception) -> UpstreamError:
    """An answer the provider could not read (whatever it raised) is the upstream's
    failure: the next candidate is tried, the model's breaker counts it. Logged with its
    traceback, since it may also be a provider's bug."""
    logger.warning("model '%s': its answer could not be read", model, exc_info=exc)
    return UpstreamError(f"model '{model}' sent an answer the gateway could not read")
