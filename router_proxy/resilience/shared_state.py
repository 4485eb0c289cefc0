"""Where replicas meet: one Redis connection pool, its health, and the sync loop.

With ``state.backend: memory`` there is no Redis and everything is process-local. With
``redis`` the rate limiters count in Redis on every request, and breakers and latencies
are synced every ``sync_interval`` (see ``sync``). When Redis stops answering, the gateway
goes on serving on local state, logs the outage once, sets ``router_shared_state_up`` to
0, and at the next successful ping pushes what it learnt meanwhile (a resync).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from router_proxy.resilience.config import StateConfig
from router_proxy.resilience.rate_limits import LimitStorages

logger = logging.getLogger("router_proxy.resilience")

SyncHook = Callable[["SharedState", bool], Awaitable[None]]
# Errors that mean "Redis is not answering", whatever client raised them.
UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)


class SharedState:
    def __init__(self, config: StateConfig) -> None:
        self.config = config
        self.redis: aioredis.Redis | None = None
        if config.backend == "redis" and config.url is not None:
            self.redis = aioredis.Redis.from_url(
                config.url,
                socket_timeout=config.timeout,
                socket_connect_timeout=config.timeout,
                health_check_interval=30,
            )
        self.up = self.redis is not None
        self.listeners: list[Callable[[bool], None]] = []  # called on every up/down change
        self.hooks: list[SyncHook] = []  # run by the sync loop while Redis is up
        self._task: asyncio.Task[None] | None = None
        # Rate-limit counters live where the shared state does (Redis, or memory).
        self.limit_storages = LimitStorages(self)

    @property
    def shared(self) -> bool:
        return self.redis is not None

    @property
    def healthy(self) -> bool:
        """Nothing is down: Redis answers, or there is no Redis to answer."""
        return self.up or not self.shared

    def key(self, *parts: str) -> str:
        return ":".join((self.config.key_prefix, *parts))

    def mark_down(self, exc: BaseException) -> None:
        if self.up:
            logger.warning(
                "shared state (Redis) unavailable, serving on local state: %s",
                type(exc).__name__,
            )
            self._set(False)

    def mark_up(self) -> bool:
        """True when this ends an outage."""
        if self.up or not self.shared:
            return False
        logger.info("shared state (Redis) is back; resyncing")
        self._set(True)
        return True

    def _set(self, up: bool) -> None:
        self.up = up
        for listener in self.listeners:
            listener(up)

    def start(self) -> None:
        if self.redis is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.redis is not None:
            await self.redis.aclose()

    async def sync_once(self) -> None:
        """Ping, then run every hook; ``resync`` tells hooks Redis just came back."""
        assert self.redis is not None
        try:
            await self.redis.ping()
        except UNAVAILABLE as exc:
            self.mark_down(exc)
            return
        resync = self.mark_up()
        for hook in self.hooks:
            try:
                await hook(self, resync)
            except UNAVAILABLE as exc:
                self.mark_down(exc)
                return

    async def _run(self) -> None:
        while True:
            await self.sync_once()
            await asyncio.sleep(self.config.sync_interval)
