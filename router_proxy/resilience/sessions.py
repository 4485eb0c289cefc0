"""Where session bindings live: conversation -> the model (and decision) that answers it.

In memory always: a bounded least-recently-used map whose entries expire ``ttl`` seconds
after their last use. With ``state.backend: redis`` also in Redis, one key per session
(``{prefix}:session:{client}:{session}``) with the same TTL, so every replica sees the
binding another made: a read is ``GETEX`` (it refreshes the TTL), a write ``SET ... EX``
sent in the background (the next turn comes long after). While Redis does not answer,
each replica serves from its memory, as the other shared state does.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from router_proxy.resilience.shared_state import UNAVAILABLE, SharedState

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Binding:
    model: str  # the model that answered the conversation's last turn
    decision: str  # the decision that turn was routed by

    def encode(self) -> str:
        return f"{self.decision}\n{self.model}"  # names hold no newline (NAME_PATTERN)

    @classmethod
    def decode(cls, value: bytes | str) -> Binding | None:
        text = value.decode() if isinstance(value, bytes) else value
        decision, newline, model = text.partition("\n")
        return cls(model, decision) if newline and model else None


class SessionMemory:
    """This process's bindings; kept across reloads (``Resources``)."""

    def __init__(
        self, ttl: float = 3600.0, max_sessions: int = 100_000, clock: Clock = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, Binding]] = OrderedDict()

    def configure(self, ttl: float, max_sessions: int) -> None:
        """A reload's settings; the bindings stay."""
        self.ttl, self.max_sessions = ttl, max_sessions
        self._evict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Binding | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.clock()
        if entry[0] <= now:
            del self._entries[key]
            return None
        self._entries[key] = (now + self.ttl, entry[1])  # used: lives on, and goes last
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, binding: Binding) -> None:
        self._entries[key] = (self.clock() + self.ttl, binding)
        self._entries.move_to_end(key)
        self._evict()

    def _evict(self) -> None:
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)


class SessionStore:
    """Bindings of one config: memory, and Redis when the shared state has one."""

    def __init__(self, memory: SessionMemory, state: SharedState) -> None:
        self.memory = memory
        self.state = state
        self._writes: set[asyncio.Task[None]] = set()

    def key(self, client: str, session: str) -> str:
        return self.state.key("session", client, session)

    async def get(self, key: str) -> Binding | None:
        redis = self.state.redis
        if redis is not None and self.state.up:
            try:
                value = await redis.getex(key, ex=max(1, round(self.memory.ttl)))
            except UNAVAILABLE as exc:
                self.state.mark_down(exc)
            else:
                binding = Binding.decode(value) if value is not None else None
                if binding is not None:
                    self.memory.put(key, binding)  # the latest, should Redis go away
                    return binding
        return self.memory.get(key)

    def put(self, key: str, binding: Binding) -> None:
        self.memory.put(key, binding)
        if self.state.redis is not None and self.state.up:
            task = asyncio.get_running_loop().create_task(self._write(key, binding))
            self._writes.add(task)  # hold it: the loop keeps only weak references
            task.add_done_callback(self._writes.discard)

    async def _write(self, key: str, binding: Binding) -> None:
        assert self.state.redis is not None
        try:
            await self.state.redis.set(key, binding.encode(), ex=max(1, round(self.memory.ttl)))
        except UNAVAILABLE as exc:
            self.state.mark_down(exc)
