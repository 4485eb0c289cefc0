"""Runtime: one loaded config with everything built from it (pipeline, providers, auth,
the engine).

Requests take the current runtime once, at their start, and hold it until their last byte
(``acquire``/``release``). A reload builds a whole new runtime and swaps it in
(``RuntimeSlot.swap``); the old one closes its providers only when its last request has
finished, so requests in flight always finish on the config they started with. What the
two share (encoder, breakers, latencies, shared state) is ``Resources``' to carry over
and to close.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from router_proxy.cache.response_cache import ResponseCache
from router_proxy.config.schema import Config
from router_proxy.engine.accounting import Accounting
from router_proxy.engine.affinity import Affinity
from router_proxy.engine.auth import ClientAuth
from router_proxy.engine.context_fit import ContextFit
from router_proxy.engine.conversation import Conversations
from router_proxy.engine.engine import Engine
from router_proxy.engine.preferences import PreferencePolicies
from router_proxy.engine.shadow import ShadowSampler
from router_proxy.engine.upstream import Upstream
from router_proxy.observability.metrics import Metrics
from router_proxy.pipeline import Pipeline
from router_proxy.providers.base import Provider
from router_proxy.providers.registry import build_provider
from router_proxy.records.build import build_recorder
from router_proxy.records.sink import RecordSink
from router_proxy.records.writer import Counters
from router_proxy.resilience.dispatch import Dispatcher
from router_proxy.resilience.feedback import UpstreamFeedback
from router_proxy.resilience.rate_limits import RateLimits
from router_proxy.resilience.sessions import SessionStore
from router_proxy.resources import ModelHealth, Resources

logger = logging.getLogger("router_proxy.runtime")


@dataclass(eq=False)
class Runtime:
    config: Config
    engine: Engine
    providers: dict[str, Provider]
    metrics: Metrics
    admin_auth: ClientAuth
    metrics_auth: ClientAuth  # open (no keys) unless server.metrics_keys lists some
    resources: Resources
    generation: int = 0
    started: bool = False
    in_flight: int = 0
    retired: bool = False
    _successor: Resources | None = field(default=None, repr=False)
    _successor_sink: RecordSink | None = field(default=None, repr=False)
    _closing: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls, config: Config, previous: Runtime | None = None, metrics: Metrics | None = None
    ) -> Runtime:
        """Build everything a config needs (may be slow: run it off the event loop).
        From ``previous`` (a reload) it keeps the metrics and what ``Resources`` carries
        over (latencies, breakers, the encoder and shared state while unchanged)."""
        if previous is not None:
            resources = previous.resources.carried_into(config)
            metrics = previous.metrics
        else:
            resources = Resources.for_config(config)
        metrics = metrics or Metrics()
        limits = RateLimits(
            config.limits, resources.shared.limit_storages, metrics.count_rate_limited
        )
        providers = {name: build_provider(name, p) for name, p in config.providers.items()}
        cache = ResponseCache.build(
            config,
            resources.shared,
            resources.encoder,
            metrics.cache_bytes.set,
            previous.engine.cache if previous is not None else None,
        )
        feedback = UpstreamFeedback(
            resources.breakers, resources.latency, metrics.count_upstream_error
        )
        upstream = Upstream(config.models, providers)
        pipeline = Pipeline.build(config, resources, previous.pipeline if previous else None)
        # Last: a policy that failed to build above leaves no writer thread behind.
        records = build_recorder(
            config.records,
            Counters(metrics.count_records_written, metrics.count_records_dropped),
            previous.engine.records if previous is not None else None,
        )
        engine = Engine(
            settings=config.server,
            auth=ClientAuth(config.server.api_keys),
            limits=limits,
            pipeline=pipeline,
            dispatcher=Dispatcher(config.resilience.retries, feedback, limits, config.models),
            upstream=upstream,
            accounting=Accounting(
                config.models,
                metrics,
                limits,
                log_requests=config.server.log_requests,
                records=records,
            ),
            metrics=metrics,
            conversations=_conversations(config, resources, upstream, metrics),
            cache=cache,
            records=records,
            shadow=ShadowSampler.build(
                config,
                upstream,
                metrics,
                previous.engine.shadow if previous else None,
                records.sink if records is not None else None,
            ),
            tracing=resources.tracing,
        )
        generation = previous.generation + 1 if previous is not None else 0
        return cls(
            config,
            engine,
            providers,
            metrics,
            ClientAuth(config.server.admin_keys),
            ClientAuth(config.server.metrics_keys),
            resources,
            generation,
        )

    @property
    def pipeline(self) -> Pipeline:
        return self.engine.pipeline

    @property
    def record_sink(self) -> RecordSink | None:
        """Where this config's decision records go (None: ``records:`` is absent). Shadow
        records are written here too; a reload that keeps the sink's settings keeps it."""
        return self.engine.records.sink if self.engine.records is not None else None

    @property
    def shared_state_up(self) -> bool:
        """Nothing shared is down: Redis answers, or there is no Redis to answer."""
        return self.resources.shared.healthy

    def health(self) -> dict[str, ModelHealth]:
        """Each configured model's breaker and observed latency, as of now."""
        return self.resources.health(self.config.models)

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()
        self.resources.start()
        self.started = True

    async def aclose(self) -> None:
        """Close providers, and the resources the next runtime does not share (all of
        them when there is none: shutdown)."""
        self.started = False
        if self.engine.shadow is not None:  # before the providers they call close
            await self.engine.shadow.aclose()
        for provider in self.providers.values():
            await provider.aclose()
        sink = self.record_sink
        if sink is not None and sink is not self._successor_sink:
            await asyncio.to_thread(sink.close)  # writes what is queued (blocking)
        await self.resources.close_unshared(self._successor)

    def acquire(self) -> None:
        """A request holds this runtime until its last byte."""
        self.in_flight += 1
        self.metrics.in_flight.inc()

    def release(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()
        if self.retired and self.in_flight == 0:
            self._close_soon()

    def retire(self, successor: Runtime) -> None:
        """No new requests will come; close once the last one in flight is done."""
        self.retired = True
        self._successor = successor.resources
        self._successor_sink = successor.record_sink
        if self.in_flight == 0:
            self._close_soon()

    def _close_soon(self) -> None:
        if self._closing is None:
            # Keep a reference: a task nobody holds may be garbage-collected mid-way.
            self._closing = asyncio.get_running_loop().create_task(self.aclose())


def _conversations(
    config: Config, resources: Resources, upstream: Upstream, metrics: Metrics
) -> Conversations:
    """Context windows, preferences and session affinity, as the config asks."""
    affinity = None
    if config.affinity.enabled:
        store = SessionStore(resources.sessions, resources.shared)
        affinity = Affinity(config.affinity, config.decisions, config.models, store, metrics)
    return Conversations(
        ContextFit(config.models, config.decisions),
        upstream.serves,
        upstream.native,
        PreferencePolicies(config.preferences, config.models, resources.latency),
        affinity,
    )


class RuntimeSlot:
    """Holds the current runtime; ``swap`` is atomic for the event loop (no await)."""

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime

    def swap(self, runtime: Runtime) -> Runtime:
        old, self.current = self.current, runtime
        old.retire(runtime)
        logger.info("config generation %d now serving", runtime.generation)
        return old
