"""Observed upstream latency per model, as an exponentially decayed average.

One tracker per process, kept across reloads, fed by every upstream call (the whole call,
or the time to the first byte for a stream). With shared state (Redis), the average over
all replicas replaces the local one once synced (resilience/shared_latency.py).
"""

from __future__ import annotations

import math
import time


class LatencyTracker:
    def __init__(self, half_life_s: float = 60.0) -> None:
        self.half_life_s = half_life_s
        self._stats: dict[str, tuple[float, float]] = {}  # model -> (average, last update)
        self._shared: dict[str, float] = {}  # model -> mean over replicas, at the last sync

    def observe(self, model: str, seconds: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        previous = self._stats.get(model)
        if previous is None:
            self._stats[model] = (seconds, now)
            return
        average, last = previous
        # Older observations lose half their weight every half-life (never less than 10%
        # for the new one, so a burst of calls still moves the average).
        keep = min(0.9, math.pow(0.5, (now - last) / self.half_life_s) if now > last else 0.9)
        self._stats[model] = (keep * average + (1 - keep) * seconds, now)

    def average(self, model: str) -> float | None:
        shared = self._shared.get(model)
        if shared is not None:
            return shared
        found = self._stats.get(model)
        return found[0] if found else None

    def local(self) -> dict[str, float]:
        """This process's own averages (what it publishes)."""
        return {model: average for model, (average, _) in self._stats.items()}

    def set_shared(self, averages: dict[str, float]) -> None:
        self._shared = averages
