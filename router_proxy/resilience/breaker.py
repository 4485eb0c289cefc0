"""Circuit breakers, one per model: closed -> open when, within ``window`` seconds, at
least ``failures`` calls failed and either they were at least ``failure_rate`` of the
window's calls or the last ``failures`` calls all failed -> half-open after ``cooldown``
(one probe call) -> closed on the probe's success, open again on its failure.

The rate is what opens a model that fails intermittently (30% of its calls, say: the
successes in between would clear a count of failures in a row); the run of failures in a
row is what opens a busy model that has just died at once, before its failures outweigh
the window's earlier successes. ``failures`` is the least evidence either needs, so one
unlucky call to a quiet model opens nothing.

Times are wall-clock epoch seconds so that replicas can share them: when one replica
opens a breaker it publishes ``open_until`` (see ``shared_breakers``), and the others open
theirs until the same moment at their next sync. Each replica counts its own calls.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from router_proxy.resilience.config import BreakerConfig

Clock = Callable[[], float]


# The window is counted in this many time slices: the same memory at one call a minute or
# a thousand a second. A slice leaves the window whole, so the window reaches back between
# ``window`` and ``window`` plus one slice.
SLICES = 20


@dataclass(slots=True)
class _Slice:
    start: float
    calls: int = 0
    failures: int = 0


@dataclass
class CallWindow:
    """A model's calls and failures over the last ``span`` seconds, and its current run of
    failures in a row."""

    slices: deque[_Slice] = field(default_factory=deque)
    calls: int = 0
    failures: int = 0
    streak: int = 0

    def record(self, now: float, span: float, failed: bool) -> None:
        self.expire(now, span)
        if not self.slices or now >= self.slices[-1].start + span / SLICES:
            self.slices.append(_Slice(now))
        last = self.slices[-1]
        last.calls += 1
        self.calls += 1
        if failed:
            last.failures += 1
            self.failures += 1
            self.streak += 1
        else:
            self.streak = 0

    def expire(self, now: float, span: float) -> None:
        while self.slices and self.slices[0].start + span / SLICES <= now - span:
            gone = self.slices.popleft()
            self.calls -= gone.calls
            self.failures -= gone.failures
        if not self.slices:
            self.streak = 0  # its failures left the window with them

    def clear(self) -> None:
        self.slices.clear()
        self.calls = self.failures = self.streak = 0


class BreakerState(IntEnum):
    # The values are the metric's (router_breaker_state).
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class Breaker:
    config: BreakerConfig
    clock: Clock = time.time
    window: CallWindow = field(default_factory=CallWindow)
    open_until: float = 0.0  # > 0 while open or half-open
    probing: bool = False  # a half-open probe is in flight
    # Opened by another replica (learnt at sync), not by our own failures.
    remote: bool = False

    def state(self) -> BreakerState:
        if self.open_until == 0.0:
            return BreakerState.CLOSED
        return BreakerState.OPEN if self.clock() < self.open_until else BreakerState.HALF_OPEN

    def allows(self) -> bool:
        """Whether a call may go now. In half-open, only one probe at a time."""
        state = self.state()
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self.probing:
            return False
        self.probing = True
        return True

    def available(self) -> bool:
        """Like ``allows`` but claims nothing: for ordering and admin views."""
        state = self.state()
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self.probing
        )

    def record_success(self) -> bool:
        """True when this closed an open breaker (its probe, or a call that began before it
        opened, answered): the window starts afresh."""
        if self.open_until == 0.0:
            self.window.record(self.clock(), self.config.window, failed=False)
            return False
        self.open_until, self.probing, self.remote = 0.0, False, False
        self.window.clear()
        return True

    def record_failure(self) -> bool:
        """True when this opened the breaker (or re-opened it after a failed probe)."""
        now = self.clock()
        if self.open_until != 0.0:
            if not self.probing:
                return False  # a call that started before it opened: already counted
            self._open(now)
            return True
        self.window.record(now, self.config.window, failed=True)
        if self._tripped():
            self._open(now)
            return True
        return False

    def _tripped(self) -> bool:
        window, config = self.window, self.config
        return window.failures >= config.failures and (
            window.streak >= config.failures
            or window.failures >= config.failure_rate * window.calls
        )

    def recent(self) -> tuple[int, int]:
        """(calls, failures) within the window now, while closed."""
        self.window.expire(self.clock(), self.config.window)
        return self.window.calls, self.window.failures

    def release_probe(self) -> None:
        """A probe that ended without a verdict (e.g. the client's own error)."""
        self.probing = False

    def open_remotely(self, until: float) -> None:
        if until > self.open_until and until > self.clock():
            self.open_until, self.remote, self.probing = until, True, False

    def _open(self, now: float) -> None:
        self.open_until = now + self.config.cooldown
        self.probing, self.remote = False, False
        self.window.clear()

    def retry_after(self) -> float:
        return max(0.0, self.open_until - self.clock())


class BreakerBoard:
    """All models' breakers (created on first use); kept across reloads."""

    def __init__(self, config: BreakerConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self._breakers: dict[str, Breaker] = {}
        # Called with (model, open_until or 0.0) whenever a breaker opens or closes here.
        self.listeners: list[Callable[[str, float], None]] = []

    def configure(self, config: BreakerConfig) -> None:
        """A reload's new thresholds apply to every breaker; their states are kept."""
        self.config = config
        for breaker in self._breakers.values():
            breaker.config = config

    def get(self, model: str) -> Breaker:
        breaker = self._breakers.get(model)
        if breaker is None:
            breaker = self._breakers[model] = Breaker(self.config, self.clock)
        return breaker

    def allows(self, model: str) -> bool:
        return not self.config.enabled or self.get(model).allows()

    def available(self, model: str) -> bool:
        return not self.config.enabled or self.get(model).available()

    def record_success(self, model: str) -> None:
        if self.get(model).record_success():
            self._notify(model, 0.0)

    def record_failure(self, model: str) -> None:
        if self.config.enabled and self.get(model).record_failure():
            self._notify(model, self.get(model).open_until)

    def release_probe(self, model: str) -> None:
        self.get(model).release_probe()

    def retry_after(self, models: Iterable[str]) -> float:
        """Seconds until the first of ``models`` takes a probe again."""
        waits = [self.get(m).retry_after() for m in models]
        return min(waits) if waits else 0.0

    def states(self) -> dict[str, Breaker]:
        return dict(self._breakers)

    def _notify(self, model: str, open_until: float) -> None:
        for listener in self.listeners:
            listener(model, open_until)
