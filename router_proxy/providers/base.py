"""The one small interface every provider adapter implements."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

from router_proxy.config.base import ProviderConfigBase
from router_proxy.protocol import Endpoint, MalformedUsage, Usage
from router_proxy.resilience.config import TimeoutsConfig

logger = logging.getLogger("router_proxy.providers")


# The W3C ``traceparent`` of the upstream call being made, when its request is traced
# (engine/traced.py sets it around each attempt): the HTTP providers send it, so an
# instrumented backend (vLLM, a collector-side proxy) joins the gateway's trace. A
# context variable, because it belongs to the attempt's task, not to the shared provider.
UPSTREAM_TRACEPARENT: ContextVar[str | None] = ContextVar("upstream_traceparent", default=None)


@dataclass(frozen=True)
class UpstreamCall:
    """One call to one model. ``body`` is the client's OpenAI-format JSON for ``endpoint``
    (already validated); adapters replace ``model`` with ``upstream_model`` and
    translate."""

    model_name: str
    upstream_model: str
    body: dict[str, Any]
    # The model's timeouts, cut to the request's deadline: ``first_byte`` bounds the wait
    # for the answer to start (on a stream, also each gap), ``total`` the whole call.
    timeouts: TimeoutsConfig
    request_id: str
    endpoint: Endpoint = "chat"
    # True: ``body`` is the client's own body in a wire format the provider speaks
    # natively (``Provider.speaks``), sent untranslated; the answer comes back in it.
    native: bool = False


@dataclass(frozen=True)
class Completion:
    body: bytes  # the endpoint's OpenAI JSON (chat.completion, ...), ready to send
    usage: Usage | None
    native: bool = False  # the body is in the client's own wire format (UpstreamCall.native)


@dataclass
class StreamStats:
    """Filled in by the adapter while the stream runs; read by the server when it ends."""

    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass
class ChatStream:
    """An upstream stream already opened and answered with a success status.

    ``chunks`` yields blocks of one or more complete OpenAI SSE events
    (``b"data: {...}\\n\\n"``) as the upstream's buffers bring them, and ends with
    ``b"data: [DONE]\\n\\n"``. A failure after the first chunk raises a GatewayError
    from the iterator; closing the generator releases the upstream connection.
    """

    chunks: AsyncGenerator[bytes, None]
    stats: StreamStats = field(default_factory=StreamStats)
    native: bool = False  # the events are in the client's own wire format


class Provider(ABC):
    """A backend reachable through one pooled client, opened by ``start`` and closed by
    ``aclose`` with the app's lifespan."""

    config_model: ClassVar[type[ProviderConfigBase]]
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({"chat"})
    # Whether its answers can carry token log-probabilities (chat ``logprobs: true``);
    # a cascade's confidence rule reads them, and its config is checked against this.
    logprobs: ClassVar[bool] = True

    def __init__(self, name: str, config: ProviderConfigBase) -> None:
        self.name = name
        self.config = config
        self._usage_said: set[str] = set()  # models whose malformed usage was logged

    def ignore_usage(self, model: str, problem: str) -> None:
        """An upstream's ``usage`` that is not token counts is left out (the answer is
        still good), and logged once per model: an upstream that sends it once sends it
        on every call."""
        if model not in self._usage_said:
            self._usage_said.add(model)
            logger.warning(
                "model '%s' (provider '%s') reported a malformed usage, ignored: %s "
                "(said once per model)",
                model,
                self.name,
                problem,
            )

    def read_usage(
        self, read: Callable[[dict[str, Any]], Usage | None], answer: Any, model: str
    ) -> Usage | None:
        """``read(answer)``: the answer's usage; None (and said once) when it is
        malformed."""
        try:
            return read(answer)
        except MalformedUsage as exc:
            self.ignore_usage(model, str(exc))
            return None

    def speaks(self, wire_format: str) -> bool:
        """Whether the upstream takes requests in ``wire_format`` (a surface's own, e.g.
        ``anthropic.messages``) untranslated."""
        return False

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open pooled resources. Called once before the first call."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled resources."""

    @abstractmethod
    async def complete(self, call: UpstreamCall) -> Completion:
        """The whole answer for ``call.endpoint`` (one of ``endpoints``), in OpenAI's
        shape for it."""

    @abstractmethod
    async def stream(self, call: UpstreamCall) -> ChatStream:
        """Open a streaming completion (chat, or text completions where served); raises
        before returning if the upstream refuses, so the client can still get a proper
        error status."""
