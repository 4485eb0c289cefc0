"""Where answers are kept: the interface, and the default store in this process's memory
(least recently used first out, bounded in bytes).

Entries are named by ``Slot``: the client key's id and the decision come first, so an
admin can purge one tenant's or one decision's answers; the digest already covers the
whole scope (``key.answer_key``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# What one entry costs besides its bytes (key, tuple, dict slot): rough, so that a store
# of tiny answers still respects its bound.
ENTRY_OVERHEAD = 200


class CacheUnavailableError(Exception):
    """The store did not answer (Redis down): the request goes on without the cache."""


@dataclass(frozen=True, slots=True)
class Slot:
    client: str  # the client key's id (RequestRecord.client)
    decision: str
    digest: str  # the answer's key, tenant included

    @property
    def name(self) -> str:
        return f"{self.client}\x00{self.decision}\x00{self.digest}"


class CacheStore(ABC):
    shared = False  # whether other replicas see the same entries

    @abstractmethod
    async def get(self, slot: Slot) -> bytes | None: ...

    @abstractmethod
    async def put(self, slot: Slot, value: bytes, ttl: float) -> None: ...

    @abstractmethod
    async def purge(self, client: str | None, decision: str | None) -> int:
        """Drop the entries of ``client`` and/or ``decision`` (None: any); how many."""

    # The semantic cache's prompts, for stores other replicas read: each context's prompts
    # as a journal (answer key, vector), so every replica's index learns what any stored.
    # A store only this process reads has nothing to share: its index is the whole truth.

    async def share_prompt(  # noqa: B027 - optional: only shared stores journal
        self, slot: Slot, context: str, vector: bytes, ttl: float, keep: int
    ) -> None:
        """Journal that ``slot``'s answer was to a prompt with ``vector`` in ``context``."""

    async def shared_prompts(
        self, slot: Slot, context: str, after: str
    ) -> list[tuple[str, str, bytes]]:
        """(journal position, answer key, vector) of the prompts journaled after ``after``
        (``"0"``: from the start), oldest first."""
        return []


class MemoryStore(CacheStore):
    def __init__(
        self,
        max_bytes: int,
        on_size: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        # Only strings, bytes and floats in the entries: the garbage collector stops
        # tracking such tuples, so a full store does not lengthen its pauses (measured: with
        # a dataclass per entry, p99 latency grew to ~80 ms at 40k entries).
        self._entries: OrderedDict[str, tuple[bytes, float, str, str]] = OrderedDict()
        self._on_size = on_size
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, slot: Slot) -> bytes | None:
        name = slot.name
        found = self._entries.get(name)
        if found is None:
            return None
        value, expires, _, _ = found
        if expires <= self._clock():
            self._drop(name)
            self._report()
            return None
        self._entries.move_to_end(name)
        return value

    async def put(self, slot: Slot, value: bytes, ttl: float) -> None:
        name = slot.name
        if name in self._entries:
            self._drop(name)
        size = _size(name, value)
        if size > self.max_bytes:
            return
        self._entries[name] = (value, self._clock() + ttl, slot.client, slot.decision)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._report()

    async def purge(self, client: str | None, decision: str | None) -> int:
        doomed = [
            name
            for name, (_, _, owner, made_by) in self._entries.items()
            if (client is None or owner == client) and (decision is None or made_by == decision)
        ]
        for name in doomed:
            self._drop(name)
        self._report()
        return len(doomed)

    def _drop(self, name: str) -> None:
        value = self._entries.pop(name)[0]
        self.bytes -= _size(name, value)

    def _report(self) -> None:
        if self._on_size is not None:
            self._on_size(self.bytes)


def _size(name: str, value: bytes) -> int:
    return len(name) + len(value) + ENTRY_OVERHEAD
