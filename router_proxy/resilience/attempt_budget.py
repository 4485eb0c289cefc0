"""The retry budget of a request that makes several planned calls (a cascade's stages, an
aggregate's panel, a verifier, a refiner): ``resilience.retries.max_attempts`` bounds the
request, not each of its calls.

Every planned call makes its first attempt whatever is left: the plan asked for it.
Retries and fallbacks beyond those draw on one pool of ``max_attempts - 1`` extra
attempts, shared by the request's calls as they need them (the parallel calls of a stage
draw from the same pool; the event loop runs one at a time, so a draw is never raced).

A request with one call needs none of this: the dispatcher counts its attempt log
against ``max_attempts`` directly, and no budget is made for it.
"""

from __future__ import annotations


class AttemptBudget:
    """One multi-call request's pool of extra attempts."""

    __slots__ = ("extra",)

    def __init__(self, max_attempts: int) -> None:
        self.extra = max_attempts - 1

    def allows(self, made: int) -> bool:
        """Whether a call that has made ``made`` attempts may make another."""
        return made == 0 or self.extra > 0

    def take(self, made: int) -> bool:
        """Claims a call's next attempt (it has made ``made``): its first is the plan's,
        any other is drawn from the pool; False when the pool is empty."""
        if made == 0:
            return True
        if self.extra <= 0:
            return False
        self.extra -= 1
        return True
