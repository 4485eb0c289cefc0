"""Breaker state shared through Redis: one hash, ``{prefix}:breakers``, model ->
``open_until`` (epoch seconds).

A replica that opens a breaker writes it; one whose probe succeeds deletes it; every
replica reads the hash at each sync and opens its own breakers until the same moment.
A breaker open here that the hash lacks was either closed by another replica's probe
(this replica had written that very opening, and Redis has stayed up since): it closes
here too; or never made it to Redis (Redis was down when it opened, or came back empty):
it is written again, the resync.
"""

from __future__ import annotations

import asyncio

from router_proxy.resilience.breaker import BreakerBoard
from router_proxy.resilience.shared_state import UNAVAILABLE, SharedState


class SharedBreakers:
    def __init__(self, board: BreakerBoard, state: SharedState) -> None:
        self.board = board
        self.state = state
        self.hash = state.key("breakers")
        self._writes: set[asyncio.Task[None]] = set()
        # model -> the open_until this replica wrote to the hash, while Redis stayed up.
        self._published: dict[str, float] = {}
        board.listeners.append(self._changed)
        state.hooks.append(self.sync)

    def _changed(self, model: str, open_until: float) -> None:
        """A breaker opened (``open_until`` > 0) or closed here: tell the others."""
        if not self.state.up:
            return  # the resync writes it when Redis is back
        task = asyncio.get_running_loop().create_task(self._write(model, open_until))
        self._writes.add(task)  # hold it: the loop keeps only weak references
        task.add_done_callback(self._writes.discard)

    async def _write(self, model: str, open_until: float) -> None:
        assert self.state.redis is not None
        try:
            if open_until:
                await self.state.redis.hset(self.hash, model, repr(open_until))
                self._published[model] = open_until
            else:
                self._published.pop(model, None)
                await self.state.redis.hdel(self.hash, model)
        except UNAVAILABLE as exc:
            self.state.mark_down(exc)

    async def sync(self, state: SharedState, resync: bool) -> None:
        assert state.redis is not None
        if resync:  # Redis may have lost everything: nothing written before counts
            self._published.clear()
        raw = await state.redis.hgetall(self.hash)
        shared = {_text(k): float(v) for k, v in raw.items()}
        for model, until in shared.items():
            self.board.get(model).open_remotely(until)
        missing: dict[str, float] = {}
        for model, breaker in self.board.states().items():
            if breaker.open_until == 0.0 or model in shared:
                continue
            if breaker.remote or self._published.get(model) == breaker.open_until:
                # Another replica's probe succeeded and deleted it: closed everywhere.
                self._published.pop(model, None)
                breaker.record_success()
            else:
                missing[model] = breaker.open_until
        if missing:
            mapping = {model: repr(until) for model, until in missing.items()}
            await state.redis.hset(self.hash, mapping=mapping)  # type: ignore[arg-type]
            self._published.update(missing)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
