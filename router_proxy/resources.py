"""What the process shares with everything built from a config (signals, selectors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.selection.latency_stats import LatencyTracker


@dataclass(frozen=True, slots=True)
class Resources:
    # Loads on first .get(): a policy with no embedding signal or learned selector never
    # loads a model.
    encoder: SharedEncoder
    # Observed upstream latency per model, fed by every call (the `latency` selector).
    latency: LatencyTracker = field(default_factory=LatencyTracker)
