"""Runtime: one loaded config with everything built from it (pipeline, providers, auth).

Requests take the current runtime once, at their start, and hold it until their last byte
(``acquire``/``release``). A reload builds a whole new runtime and swaps it in
(``RuntimeSlot.swap``); the old one closes its providers only when its last request has
finished, so requests in flight always finish on the config they started with.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from router_proxy.config.schema import Config
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.observability.metrics import Metrics
from router_proxy.pipeline import Pipeline
from router_proxy.providers.base import Provider
from router_proxy.providers.registry import PROVIDER_TYPES
from router_proxy.resilience.dispatch import Dispatcher
from router_proxy.resilience.rate_limits import RateLimits
from router_proxy.resources import Resources
from router_proxy.server.auth import ClientAuth

logger = logging.getLogger("router_proxy.runtime")


@dataclass(eq=False)
class Runtime:
    config: Config
    pipeline: Pipeline
    providers: dict[str, Provider]
    metrics: Metrics
    auth: ClientAuth
    admin_auth: ClientAuth
    resources: Resources
    limits: RateLimits
    dispatcher: Dispatcher
    generation: int = 0
    # Set when a newer runtime no longer shares this one's encoder (or shared state):
    # close it with us.
    encoder_retired: bool = False
    shared_retired: bool = False
    started: bool = False
    in_flight: int = 0
    retired: bool = False
    _closing: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls, config: Config, previous: Runtime | None = None, metrics: Metrics | None = None
    ) -> Runtime:
        """Build everything a config needs (may be slow: run it off the event loop).
        From ``previous`` (a reload) it keeps the metrics, the latency statistics and the
        encoder (model and cache) if the ``embeddings`` section did not change."""
        breaker, state = config.resilience.breaker, config.state
        if previous is not None:
            encoder = previous.resources.encoder.for_config(config.embeddings)
            resources = Resources.create(encoder, state, breaker, previous.resources)
            metrics = previous.metrics
        else:
            resources = Resources.create(SharedEncoder(config.embeddings), state, breaker)
        metrics = metrics or Metrics()
        limits = RateLimits(
            config.limits, resources.shared.limit_storages, metrics.count_rate_limited
        )
        providers = {name: PROVIDER_TYPES[p.type](name, p) for name, p in config.providers.items()}
        return cls(
            config,
            Pipeline.build(config, resources),
            providers,
            metrics,
            ClientAuth(config.server.api_keys),
            ClientAuth(config.server.admin_keys),
            resources,
            limits,
            Dispatcher(config.resilience.retries, resources.breakers, limits, config.models),
            previous.generation + 1 if previous is not None else 0,
        )

    @property
    def encoder(self) -> SharedEncoder:
        return self.resources.encoder

    def provider_for(self, model: str) -> Provider:
        return self.providers[self.config.models[model].provider]

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()
        self.resources.shared.start()
        self.started = True

    async def aclose(self) -> None:
        self.started = False
        for provider in self.providers.values():
            await provider.aclose()
        if self.encoder_retired:
            self.encoder.close()
        if self.shared_retired:
            await self.resources.shared.aclose()

    def acquire(self) -> None:
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        if self.retired and self.in_flight == 0:
            self._close_soon()

    def retire(self) -> None:
        """No new requests will come; close once the last one in flight is done."""
        self.retired = True
        if self.in_flight == 0:
            self._close_soon()

    def _close_soon(self) -> None:
        if self._closing is None:
            # Keep a reference: a task nobody holds may be garbage-collected mid-way.
            self._closing = asyncio.get_running_loop().create_task(self.aclose())


class RuntimeSlot:
    """Holds the current runtime; ``swap`` is atomic for the event loop (no await)."""

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime

    def swap(self, runtime: Runtime) -> Runtime:
        old, self.current = self.current, runtime
        old.encoder_retired = old.encoder is not runtime.encoder
        old.shared_retired = old.resources.shared is not runtime.resources.shared
        old.retire()
        logger.info("config generation %d now serving", runtime.generation)
        return old
