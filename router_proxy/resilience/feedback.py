"""The one place an upstream call's outcome lands, whatever stage it happened in: before
the first byte (the dispatcher, deciding on retries and fallback) or after it (a stream
failing mid-way, seen by the relay).

A success closes the model's breaker and feeds its observed latency; a failure counts an
upstream error (by model and code) and, unless it was the client's own mistake, counts
against the model's breaker.
"""

from __future__ import annotations

from collections.abc import Callable

from router_proxy.errors import GatewayError
from router_proxy.resilience.breaker import BreakerBoard
from router_proxy.resilience.latency_tracker import LatencyTracker
from router_proxy.resilience.retry import Verdict, classify

CountError = Callable[[str, str], None]  # (model, error code): for metrics


class UpstreamFeedback:
    def __init__(
        self,
        breakers: BreakerBoard,
        latency: LatencyTracker | None = None,
        count_error: CountError | None = None,
    ) -> None:
        self.breakers = breakers
        self.latency = latency
        self.count_error = count_error

    def succeeded(self, model: str, seconds: float) -> None:
        """``seconds``: until the answer started (a stream's first event). Successes only
        feed latency: a fast failure is not a fast model."""
        self.breakers.record_success(model)
        if self.latency is not None:
            self.latency.observe(model, seconds)

    def failed(self, model: str, error: GatewayError) -> Verdict:
        """Record a failed call; returns what the failure allows (retry, fallback, final)."""
        if self.count_error is not None:
            self.count_error(model, error.code or "error")
        verdict = classify(error)
        if verdict is Verdict.FINAL:  # the client's mistake says nothing of health
            self.breakers.release_probe(model)
        else:
            self.breakers.record_failure(model)
        return verdict

    def abandoned(self, model: str) -> None:
        """A call ended with no verdict (the client left, or a bug): a half-open probe it
        held is given back, so the breaker is not stuck half-open."""
        self.breakers.release_probe(model)
