"""What the process shares with everything built from a config, kept across reloads:
the encoder, observed latencies, circuit breakers, session bindings, the shared state
(Redis or memory) that holds the rate-limit counters and carries them across replicas,
and the CPU pool that heavy routing work runs in.

``Resources`` decides what a reload carries over (``carried_into``) and closes what the
next config no longer shares (``close_unshared``); ``BuildContext`` is what building any
extension (signal, selector, plugin) may read.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.resilience.breaker import BreakerBoard, BreakerState
from router_proxy.resilience.config import BreakerConfig, StateConfig
from router_proxy.resilience.latency_tracker import LatencyTracker
from router_proxy.resilience.sessions import SessionMemory
from router_proxy.resilience.shared_breakers import SharedBreakers
from router_proxy.resilience.shared_latency import SharedLatency
from router_proxy.resilience.shared_state import SharedState

if TYPE_CHECKING:
    from router_proxy.config.schema import Config, ModelConfig
    from router_proxy.config.tracing import TracingConfig
    from router_proxy.observability.tracing import Tracing

T = TypeVar("T")
DEFAULT_CPU_WORKERS = 2
# Pool threads hold the GIL while they compute; the event loop waits up to the switch
# interval each time it wants it back (several times per request). Two redactions of
# 1.6 MB running: loop stalls p99 124 ms at Python's default 5 ms, 25 ms at 1 ms.
SWITCH_INTERVAL_S = 0.001


class CpuPool:
    """A few threads for CPU work that must not hold the event loop: a long prompt's PII
    scan, redacting a large body (``server.cpu_workers``). Bounded, so a flood of heavy
    requests waits here rather than in the loop; its threads start on first use."""

    def __init__(self, workers: int = DEFAULT_CPU_WORKERS) -> None:
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None

    def run(self, fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
        """``fn(*args)`` in a pool thread; cancelling the future drops it if not started."""
        if self._executor is None:
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="router-cpu")
        return asyncio.wrap_future(self._executor.submit(fn, *args))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class ModelHealth:
    """One model as the gateway sees it now (for /metrics and /admin/models)."""

    breaker: BreakerState
    available: bool  # a request may be sent to it now (closed, or a probe is free)
    retry_after: float  # seconds until an open breaker takes a probe
    recent_calls: int  # within the breaker's window, while it is closed
    recent_failures: int
    opened_by_other_replica: bool
    latency: float | None  # observed seconds until the answer starts; None: no call yet


@dataclass(frozen=True, slots=True)
class Resources:
    # Loads on first .get(): a policy with no embedding signal or learned selector never
    # loads a model.
    encoder: SharedEncoder
    # Observed upstream latency per model, fed by every call (the `latency` selector).
    latency: LatencyTracker = field(default_factory=LatencyTracker)
    breakers: BreakerBoard = field(default_factory=lambda: BreakerBoard(BreakerConfig()))
    # Redis (or nothing) for limits, breakers and latencies; holds the limit counters.
    shared: SharedState = field(default_factory=lambda: SharedState(StateConfig()))
    cpu: CpuPool = field(default_factory=CpuPool)
    # This process's session bindings (session affinity), whatever the shared state.
    sessions: SessionMemory = field(default_factory=SessionMemory)
    # OpenTelemetry's tracer and exporter; None (and the SDK never imported) without a
    # ``tracing:`` section.
    tracing: Tracing | None = None

    @classmethod
    def for_config(cls, config: Config) -> Resources:
        """Fresh resources for a first config."""
        return cls._assemble(
            SharedEncoder(config.embeddings),
            LatencyTracker(),
            BreakerBoard(config.resilience.breaker),
            config.state,
            CpuPool(config.server.cpu_workers),
            SessionMemory(config.affinity.ttl, config.affinity.max_sessions),
            _tracing(config.tracing),
        )

    def carried_into(self, config: Config) -> Resources:
        """The resources a reload to ``config`` serves with: latencies and breakers always
        carry over; the encoder (model and cache) while ``embeddings`` is unchanged; the
        shared state (and its limit counters) while ``state`` is unchanged; the CPU pool
        while ``server.cpu_workers`` is; the tracer while ``tracing`` is."""
        self.breakers.configure(config.resilience.breaker)
        self.sessions.configure(config.affinity.ttl, config.affinity.max_sessions)
        encoder = self.encoder.for_config(config.embeddings)
        workers = config.server.cpu_workers
        cpu = self.cpu if self.cpu.workers == workers else CpuPool(workers)
        tracing = self.tracing
        if tracing is None or tracing.config != config.tracing:
            tracing = _tracing(config.tracing)
        if self.shared.config == config.state:
            return Resources(
                encoder, self.latency, self.breakers, self.shared, cpu, self.sessions, tracing
            )
        self.breakers.listeners.clear()  # the old shared state's listeners go with it
        return self._assemble(
            encoder, self.latency, self.breakers, config.state, cpu, self.sessions, tracing
        )

    @classmethod
    def _assemble(
        cls,
        encoder: SharedEncoder,
        latency: LatencyTracker,
        breakers: BreakerBoard,
        state: StateConfig,
        cpu: CpuPool,
        sessions: SessionMemory,
        tracing: Tracing | None,
    ) -> Resources:
        shared = SharedState(state)
        if shared.shared:  # breakers and latencies sync through it
            SharedBreakers(breakers, shared)
            SharedLatency(latency, shared)
        return cls(encoder, latency, breakers, shared, cpu, sessions, tracing)

    def start(self) -> None:
        self.shared.start()

    def health(self, models: Iterable[str]) -> dict[str, ModelHealth]:
        health = {}
        for model in models:
            breaker = self.breakers.get(model)
            calls, failures = breaker.recent()
            health[model] = ModelHealth(
                breaker=breaker.state(),
                available=self.breakers.available(model),
                retry_after=breaker.retry_after(),
                recent_calls=calls,
                recent_failures=failures,
                opened_by_other_replica=breaker.remote,
                latency=self.latency.average(model),
            )
        return health

    async def close_unshared(self, successor: Resources | None) -> None:
        """Close what ``successor`` (the next config's resources; None at shutdown) does
        not share: the encoder, the shared state, the CPU pool, the tracer (its last
        spans exported first)."""
        if successor is None or successor.encoder is not self.encoder:
            self.encoder.close()
        if successor is None or successor.cpu is not self.cpu:
            self.cpu.close()
        if successor is None or successor.shared is not self.shared:
            await self.shared.aclose()
        tracing = self.tracing
        if tracing is not None and (successor is None or successor.tracing is not tracing):
            await asyncio.to_thread(tracing.shutdown)  # flushes over the network


def _tracing(config: TracingConfig | None) -> Tracing | None:
    """The tracer a ``tracing:`` section asks for. Imported here, only then: a gateway
    that does not trace never loads the OpenTelemetry SDK."""
    if config is None:
        return None
    from router_proxy.observability.tracing import Tracing

    return Tracing(config)


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What building an extension (signal, selector, plugin) may read besides its own
    config: the process's shared resources and the policy's models. One per config load
    (offline evaluation builds selectors with no policy: no models)."""

    resources: Resources
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
