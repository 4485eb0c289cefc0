"""What the process shares with everything built from a config, kept across reloads:
the encoder, observed latencies, circuit breakers, rate-limit counters, and the shared
state (Redis) that carries the last three across replicas."""

from __future__ import annotations

from dataclasses import dataclass, field

from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.resilience.breaker import BreakerBoard
from router_proxy.resilience.config import BreakerConfig, StateConfig
from router_proxy.resilience.rate_limits import LimitStorages
from router_proxy.resilience.shared_breakers import SharedBreakers
from router_proxy.resilience.shared_latency import SharedLatency
from router_proxy.resilience.shared_state import SharedState
from router_proxy.selection.latency_stats import LatencyTracker


@dataclass(frozen=True, slots=True)
class Resources:
    # Loads on first .get(): a policy with no embedding signal or learned selector never
    # loads a model.
    encoder: SharedEncoder
    # Observed upstream latency per model, fed by every call (the `latency` selector).
    latency: LatencyTracker = field(default_factory=LatencyTracker)
    breakers: BreakerBoard = field(default_factory=lambda: BreakerBoard(BreakerConfig()))
    shared: SharedState = field(default_factory=lambda: SharedState(StateConfig()))
    limit_storages: LimitStorages | None = None

    def __post_init__(self) -> None:
        if self.limit_storages is None:
            object.__setattr__(self, "limit_storages", LimitStorages(self.shared))

    @classmethod
    def create(
        cls,
        encoder: SharedEncoder,
        state: StateConfig,
        breaker: BreakerConfig,
        previous: Resources | None = None,
    ) -> Resources:
        """New resources, or ``previous``'s parts carried over (a reload); the shared
        state is replaced only when the ``state`` section changed."""
        latency = previous.latency if previous else LatencyTracker()
        breakers = previous.breakers if previous else BreakerBoard(breaker)
        breakers.configure(breaker)
        if previous is not None and previous.shared.config == state:
            return cls(encoder, latency, breakers, previous.shared, previous.limit_storages)
        shared = SharedState(state)
        if previous is not None:  # the old shared state's listeners go with it
            breakers.listeners.clear()
        if shared.shared:
            SharedBreakers(breakers, shared)
            SharedLatency(latency, shared)
        return cls(encoder, latency, breakers, shared, LimitStorages(shared))
