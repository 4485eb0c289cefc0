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
JOURNAL_PAGE = 1000  # prompts read per round trip when an index catches up


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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

    def journal_key(self, slot: Slot, context: str) -> str:
        return self.state.key("cache-ctx", _short(slot.client), _short(slot.decision), context)

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

    async def share_prompt(
        self, slot: Slot, context: str, vector: bytes, ttl: float, keep: int
    ) -> None:
        key = self.journal_key(slot, context)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, {"d": slot.digest, "v": vector}, maxlen=keep, approximate=True)
                pipe.pexpire(key, max(1, int(ttl * 1000)))
                await pipe.execute()
        except UNAVAILABLE as exc:
            raise self._down(exc) from exc

    async def shared_prompts(
        self, slot: Slot, context: str, after: str
    ) -> list[tuple[str, str, bytes]]:
        self._check_up()
        try:
            rows = await self.redis.xrange(
                self.journal_key(slot, context), min=f"({after}", count=JOURNAL_PAGE
            )
        except UNAVAILABLE as exc:
            raise self._down(exc) from exc
        journal = []
        for position, fields in rows or ():
            digest, vector = (fields or {}).get(b"d"), (fields or {}).get(b"v")
            if position is not None and digest is not None and isinstance(vector, bytes):
                journal.append((_text(position), _text(digest), vector))
        return journal

    async def purge(self, client: str | None, decision: str | None) -> int:
        """The answers (counted) and the semantic journals of ``client`` / ``decision``."""
        client_part = _short(client) if client is not None else "*"
        decision_part = _short(decision) if decision is not None else "*"
        try:
            purged = await self._unlink(self.state.key("cache", client_part, decision_part, "*"))
            await self._unlink(self.state.key("cache-ctx", client_part, decision_part, "*"))
        except UNAVAILABLE as exc:
            raise self._down(exc) from exc
        return purged

    async def _unlink(self, pattern: str) -> int:
        unlinked = 0
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(match=pattern, count=PURGE_BATCH):
            batch.append(key)
            if len(batch) >= PURGE_BATCH:
                unlinked += await self.redis.unlink(*batch)
                batch.clear()
        if batch:
            unlinked += await self.redis.unlink(*batch)
        return unlinked

    def _check_up(self) -> None:
        if not self.state.up:
            raise CacheUnavailableError("shared state (Redis) is down")

    def _down(self, exc: BaseException) -> CacheUnavailableError:
        self.state.mark_down(exc)
        return CacheUnavailableError(type(exc).__name__)
