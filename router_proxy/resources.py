"""What the process shares with everything built from a config, kept across reloads:
the encoder, observed latencies, circuit breakers, and the shared state (Redis or memory)
that holds the rate-limit counters and carries all three across replicas."""

from __future__ import annotations

from dataclasses import dataclass, field

from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.resilience.breaker import BreakerBoard
from router_proxy.resilience.config import BreakerConfig, StateConfig
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
    # Redis (or nothing) for limits, breakers and latencies; holds the limit counters.
    shared: SharedState = field(default_factory=lambda: SharedState(StateConfig()))

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
            return cls(encoder, latency, breakers, previous.shared)
        shared = SharedState(state)
        if previous is not None:  # the old shared state's listeners go with it
            breakers.listeners.clear()
        if shared.shared:
            SharedBreakers(breakers, shared)
            SharedLatency(latency, shared)
        return cls(encoder, latency, breakers, shared)
