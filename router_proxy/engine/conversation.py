"""One turn of a conversation, between routing and dispatch: which of the plan's
candidates are tried, in which order, and what the dispatcher does when an upstream
finds the prompt too long.

``Conversations.prepare`` runs once per request before the first call (the context
windows, ``context_fit.py``); the engine hands the turn's candidates and overflow to the
dispatcher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from router_proxy.context import RequestContext
from router_proxy.engine.context_fit import ContextFit
from router_proxy.engine.record import RequestRecord
from router_proxy.pipeline import RoutePlan
from router_proxy.protocol import Endpoint
from router_proxy.resilience.overflow import Overflow


@dataclass(slots=True)
class Turn:
    candidates: tuple[str, ...]  # in the order they are tried
    overflow: Overflow | None = None  # what to try when an upstream finds it too long


class Conversations:
    """Built once per config, with the engine."""

    def __init__(self, context: ContextFit, serves: Callable[[str, Endpoint], bool]) -> None:
        self.context = context
        self.serves = serves  # whether a model's provider serves an endpoint

    async def prepare(
        self,
        plan: RoutePlan,
        ctx: RequestContext,
        record: RequestRecord,
        candidates: tuple[str, ...],
    ) -> Turn:
        """``candidates``: the plan's, those that serve the request's endpoint. (Async:
        a session's binding may live in Redis.)"""
        if not self.context.active:  # the common case costs one attribute read
            return Turn(candidates)
        endpoint = ctx.endpoint
        fitting, fit = self.context.check(
            plan.decision,
            candidates,
            ctx,
            record.attempts.skipped,
            lambda model: self.serves(model, endpoint),
        )
        return Turn(fitting, fit)
