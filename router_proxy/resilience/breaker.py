"""Circuit breakers, one per model: closed -> open after ``failures`` failures within
``window`` seconds -> half-open after ``cooldown`` (one probe call) -> closed on the
probe's success, open again on its failure.

Times are wall-clock epoch seconds so that replicas can share them: when one replica
opens a breaker it publishes ``open_until`` (see ``shared_breakers``), and the others open
theirs until the same moment at their next sync. Each replica counts its own failures.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from router_proxy.resilience.config import BreakerConfig

Clock = Callable[[], float]


class BreakerState(IntEnum):
    # The values are the metric's (router_breaker_state).
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class Breaker:
    config: BreakerConfig
    clock: Clock = time.time
    failures: deque[float] = field(default_factory=deque)
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
        """True when this closed an open breaker."""
        was_open = self.open_until != 0.0
        self.open_until, self.probing, self.remote = 0.0, False, False
        self.failures.clear()
        return was_open

    def record_failure(self) -> bool:
        """True when this opened the breaker (or re-opened it after a failed probe)."""
        now = self.clock()
        if self.open_until != 0.0:
            if not self.probing:
                return False  # a call that started before it opened: already counted
            self._open(now)
            return True
        self.failures.append(now)
        while self.failures and self.failures[0] <= now - self.config.window:
            self.failures.popleft()
        if len(self.failures) >= self.config.failures:
            self._open(now)
            return True
        return False

    def release_probe(self) -> None:
        """A probe that ended without a verdict (e.g. the client's own error)."""
        self.probing = False

    def open_remotely(self, until: float) -> None:
        if until > self.open_until and until > self.clock():
            self.open_until, self.remote, self.probing = until, True, False

    def _open(self, now: float) -> None:
        self.open_until = now + self.config.cooldown
        self.probing, self.remote = False, False
        self.failures.clear()

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
