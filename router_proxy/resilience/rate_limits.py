"""Rate limits and budgets per client key and per model, on the ``limits`` library.

Why ``limits`` (alisaifee/limits, the engine of Flask-Limiter and slowapi): its Redis
strategies are single Lua scripts, so a check-and-count is atomic and N replicas never
admit N times the limit; the same strategies run in memory for one process; and it speaks
redis-py's asyncio client. Strategies:
- requests per minute: moving window (exact: every admitted request is a timestamp);
- tokens per minute, dollars per day: sliding window counter (two counters per window,
  O(1) whatever the amount; approximate by at most one window's weighting).

Requests are counted when admitted. Tokens and dollars are only known when the answer is
complete, so they are charged afterwards (capped at what is left) and a request is
admitted while its window still has room: the one in flight when a budget runs out may
overshoot it, the ones after it are refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError

from router_proxy.errors import RateLimitError
from router_proxy.resilience.config import LimitsConfig, LimitSet

if TYPE_CHECKING:
    from router_proxy.resilience.shared_state import SharedState

MICRO = 1_000_000  # dollars are counted in micro-dollars: the library counts integers
OnLimited = Callable[[str, str], None]  # (scope, kind) of a refusal: for metrics


class LimitStorages:
    """The counters of one shared state (see ``SharedState.limit_storages``): in memory
    always, in Redis when shared. Kept across reloads with the shared state."""

    def __init__(self, state: SharedState) -> None:
        self.state = state
        memory = MemoryStorage()
        self.local = (MovingWindowRateLimiter(memory), SlidingWindowCounterRateLimiter(memory))
        self.shared: tuple[RateLimiter, RateLimiter] | None = None
        if state.redis is not None:
            storage = RedisStorage(
                "async+" + str(state.config.url),
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix=state.key("limits"),
                connection_pool=state.redis.connection_pool,  # type: ignore[arg-type]
            )
            self.shared = (
                MovingWindowRateLimiter(storage),
                SlidingWindowCounterRateLimiter(storage),
            )

    def current(self) -> tuple[RateLimiter, RateLimiter]:
        """(moving, sliding): Redis's while it answers, else this process's."""
        return self.shared if self.shared is not None and self.state.up else self.local


@dataclass(frozen=True)
class Limit:
    scope: str  # client | model
    kind: str  # requests | tokens | dollars
    item: RateLimitItem


def _limits(scope: str, limits: LimitSet) -> tuple[Limit, ...]:
    found = []
    if limits.requests_per_minute is not None:
        found.append(Limit(scope, "requests", RateLimitItemPerMinute(limits.requests_per_minute)))
    if limits.tokens_per_minute is not None:
        found.append(Limit(scope, "tokens", RateLimitItemPerMinute(limits.tokens_per_minute)))
    if limits.dollars_per_day is not None:
        amount = max(1, round(limits.dollars_per_day * MICRO))
        found.append(Limit(scope, "dollars", RateLimitItemPerDay(amount)))
    return tuple(found)


class RateLimits:
    def __init__(
        self, config: LimitsConfig, storages: LimitStorages, on_limited: OnLimited | None = None
    ) -> None:
        self.storages = storages
        self.client = _limits("client", config.per_client)
        self.models = {m: _limits("model", s) for m, s in config.per_model.items()}
        self.on_limited = on_limited
        self.enabled = bool(self.client) or any(self.models.values())

    async def admit_client(self, client: str) -> None:
        await self._admit(self.client, client)

    async def admit_model(self, model: str) -> None:
        await self._admit(self.models.get(model, ()), model)

    async def charge(self, client: str, model: str, tokens: int, dollars: float) -> None:
        """Count a finished call's usage against the client's and the model's budgets."""
        amounts = {"tokens": tokens, "dollars": round(dollars * MICRO)}
        for limits, subject in ((self.client, client), (self.models.get(model, ()), model)):
            for limit in limits:
                amount = amounts.get(limit.kind, 0)
                if amount > 0:
                    await self._charge(limit, subject, amount)

    async def _admit(self, limits: tuple[Limit, ...], subject: str) -> None:
        if not limits:
            return
        # Budgets (tokens, dollars) are looked at before a request is counted, so a request
        # refused for its budget does not use up a request slot as well.
        for limit in sorted(limits, key=lambda lim: lim.kind == "requests"):
            if not await self._try(limit, subject):
                if self.on_limited is not None:
                    self.on_limited(limit.scope, limit.kind)
                raise await self._refusal(limit, subject)

    async def _try(self, limit: Limit, subject: str) -> bool:
        moving, sliding = self.storages.current()
        try:
            if limit.kind == "requests":
                return await moving.hit(limit.item, limit.scope, subject, limit.kind)
            return await sliding.test(limit.item, limit.scope, subject, limit.kind)
        except StorageError as exc:  # Redis went away: this request counts locally
            self.storages.state.mark_down(exc)
            return await self._try(limit, subject)

    async def _charge(self, limit: Limit, subject: str, amount: int) -> None:
        _, sliding = self.storages.current()
        keys = (limit.scope, subject, limit.kind)
        try:
            stats = await sliding.get_window_stats(limit.item, *keys)
            if stats.remaining > 0:
                await sliding.hit(limit.item, *keys, cost=min(amount, stats.remaining))
        except StorageError as exc:
            self.storages.state.mark_down(exc)
            await self._charge(limit, subject, amount)

    async def _refusal(self, limit: Limit, subject: str) -> RateLimitError:
        moving, sliding = self.storages.current()
        limiter = moving if limit.kind == "requests" else sliding
        try:
            stats = await limiter.get_window_stats(limit.item, limit.scope, subject, limit.kind)
            reset = max(1, math.ceil(stats.reset_time - time.time()))
        except StorageError:
            reset = limit.item.get_expiry()
        amount = limit.item.amount
        shown = f"${amount / MICRO:g}" if limit.kind == "dollars" else str(amount)
        per = "day" if limit.kind == "dollars" else "minute"
        who = "this API key" if limit.scope == "client" else f"model '{subject}'"
        name = "requests" if limit.kind == "requests" else "tokens"
        headers = {"retry-after": str(reset), f"x-ratelimit-reset-{name}": f"{reset}s"}
        if limit.kind != "dollars":
            headers[f"x-ratelimit-limit-{name}"] = str(amount)
            headers[f"x-ratelimit-remaining-{name}"] = "0"
        return RateLimitError(
            f"Rate limit reached for {who}: {shown} {limit.kind} per {per}. "
            f"Try again in {reset} s.",
            code="rate_limit_exceeded" if limit.kind != "dollars" else "budget_exceeded",
            headers=headers,
        )
