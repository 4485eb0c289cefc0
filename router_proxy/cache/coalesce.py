"""Single flight: while one request's upstream call for an exact key is in flight, later
requests with the same key wait for its answer instead of each paying for their own.

The first request that misses leads; followers wait for it, but never longer than the
flight's deadline (``coalesce_wait`` from the leader's start). A leader that fails, is
cancelled or ends without a cacheable answer settles the flight with None, and its
followers go on to the upstream themselves: coalescing saves calls, it never fails one.

Per process: replicas sharing a Redis store each lead their own flights.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from router_proxy.cache.entry import CachedAnswer
from router_proxy.cache.store import Slot


@dataclass(eq=False, slots=True)
class Flight:
    slot: Slot
    deadline: float  # loop time: followers stop waiting then and go on
    answer: asyncio.Future[CachedAnswer | None]


class Flights:
    """The flights in progress, by exact key."""

    def __init__(self) -> None:
        self._flying: dict[Slot, Flight] = {}
        self.waiting = 0  # followers waiting now, all flights together

    def __len__(self) -> int:
        return len(self._flying)

    def join(self, slot: Slot, wait: float) -> tuple[Flight, bool]:
        """The flight for ``slot``, and whether the caller leads it (a new one). A flight
        past its deadline is replaced, so a hung leader holds nobody up for long."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        flight = self._flying.get(slot)
        if flight is not None and now < flight.deadline and not flight.answer.done():
            return flight, False
        flight = Flight(slot, now + wait, loop.create_future())
        self._flying[slot] = flight
        return flight, True

    def joined(self, slot: Slot) -> Flight | None:
        """The flight for ``slot`` still worth waiting for, without leading one."""
        flight = self._flying.get(slot)
        if flight is None or flight.answer.done():
            return None
        return flight if asyncio.get_running_loop().time() < flight.deadline else None

    def settle(self, flight: Flight, answer: CachedAnswer | None) -> None:
        """The leader's answer (None: none to share); later calls change nothing."""
        if not flight.answer.done():
            flight.answer.set_result(answer)
        if self._flying.get(flight.slot) is flight:
            del self._flying[flight.slot]

    async def follow(self, flight: Flight) -> CachedAnswer | None:
        """The leader's answer, or None when it has none or the deadline passes first.
        (A follower cancelled while waiting leaves the flight as it is.)"""
        left = flight.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return None
        self.waiting += 1
        try:
            done, _ = await asyncio.wait((flight.answer,), timeout=left)
        finally:
            self.waiting -= 1
        return flight.answer.result() if done else None
