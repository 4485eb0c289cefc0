"""Answers in Redis (``state.backend: redis``): every replica reads what any one stored.

Keys are ``{prefix}:cache:{client}:{decision}:{digest}`` with the client id and the
decision name hashed (no glob characters, fixed length), so a purge is one ``SCAN MATCH``;
Redis expires entries itself (``SET ... PX ttl``). While the shared state is down (this
store or the sync loop saw Redis fail) the cache is bypassed at once, without waiting
for a timeout per request; the sync loop's next good ping brings it back.
"""

from __future__ import annotations

import hashlib

from router_proxy.cache.store import CacheStore, CacheUnavailableError, Slot
from router_proxy.resilience.shared_state import UNAVAILABLE, SharedState

PURGE_BATCH = 500


def _short(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=8).hexdigest()


class RedisStore(CacheStore):
    shared = True

    def __init__(self, state: SharedState) -> None:
        if state.redis is None:
            raise ValueError("a Redis store needs state.backend: redis")
        self.state = state
        self.redis = state.redis

    def key(self, slot: Slot) -> str:
        return self.state.key("cache", _short(slot.client), _short(slot.decision), slot.digest)

    async def get(self, slot: Slot) -> bytes | None:
        self._check_up()
        try:
            value = await self.redis.get(self.key(slot))
        except UNAVAILABLE as exc:
            raise self._down(exc) from exc
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def put(self, slot: Slot, value: bytes, ttl: float) -> None:
        self._check_up()
        try:
            await self.redis.set(self.key(slot), value, px=max(1, int(ttl * 1000)))
        except UNAVAILABLE as exc:
            raise self._down(exc) from exc

    async def purge(self, client: str | None, decision: str | None) -> int:
        client_part = _short(client) if client is not None else "*"
        decision_part = _short(decision) if decision is not None else "*"
        pattern = self.state.key("cache", client_part, decision_part, "*")
        purged = 0
        batch: list[bytes] = []
        try:
            async for key in self.redis.scan_iter(match=pattern, count=PURGE_BATCH):
                batch.append(key)
                if len(batch) >= PURGE_BATCH:
                    purged += await self.redis.unlink(*batch)
                    batch.clear()
            if batch:
                purged += await self.redis.unlink(*batch)
        except UNAVAILABLE as exc:
            raise self._down(exc) from exc
        return purged

    def _check_up(self) -> None:
        if not self.state.up:
            raise CacheUnavailableError("shared state (Redis) is down")

    def _down(self, exc: BaseException) -> CacheUnavailableError:
        self.state.mark_down(exc)
        return CacheUnavailableError(type(exc).__name__)
