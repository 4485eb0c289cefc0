"""Latency statistics shared through Redis, for the ``latency`` selector.

Each replica publishes its own decayed average per model into one hash,
``{prefix}:latency`` (field ``model|replica``, value ``average timestamp``), at each sync
and reads everyone's back: the selector then ranks by the mean over the replicas with a
recent value, so a model that one replica found slow is avoided by all.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

from router_proxy.resilience.latency_tracker import LatencyTracker
from router_proxy.resilience.shared_state import SharedState

# Values older than this many half-lives no longer describe the model.
STALE_HALF_LIVES = 5


class SharedLatency:
    def __init__(self, tracker: LatencyTracker, state: SharedState) -> None:
        self.tracker = tracker
        self.state = state
        self.replica = uuid.uuid4().hex[:12]
        self.hash = state.key("latency")
        state.hooks.append(self.sync)
        state.listeners.append(self._on_health)

    def _on_health(self, up: bool) -> None:
        if not up:  # the last shared view goes stale: rank by what this replica sees
            self.tracker.set_shared({})

    async def sync(self, state: SharedState, resync: bool) -> None:
        assert state.redis is not None
        now = time.time()
        stale = STALE_HALF_LIVES * self.tracker.half_life_s
        mine = {f"{m}|{self.replica}": f"{avg} {now}" for m, avg in self.tracker.local().items()}
        async with state.redis.pipeline(transaction=False) as pipe:
            if mine:
                pipe.hset(self.hash, mapping=mine)  # type: ignore[arg-type]
            pipe.hgetall(self.hash)
            replies = await pipe.execute()
        values: dict[str, list[float]] = defaultdict(list)
        expired: list[str] = []
        for field, value in replies[-1].items():
            model = field.decode().rpartition("|")[0]
            average, at = (float(x) for x in value.decode().split())
            if now - at <= stale:
                values[model].append(average)
            else:
                expired.append(field.decode())
        if expired:  # replicas that went away
            await state.redis.hdel(self.hash, *expired)
        self.tracker.set_shared({m: sum(v) / len(v) for m, v in values.items()})
