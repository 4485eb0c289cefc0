"""One turn of a conversation, between routing and dispatch: which of the plan's
candidates are tried, in which order, what the dispatcher does when an upstream finds
the prompt too long, and what the session is bound to afterwards.

    prepare (context windows, then affinity) -> dispatch -> answered (the binding)

``context_fit.py`` and ``affinity.py`` hold each step's rules; with neither configured
(no window declared, affinity off) a turn costs two attribute reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from router_proxy.context import RequestContext
from router_proxy.engine.affinity import Affinity, SessionTurn
from router_proxy.engine.context_fit import ContextFit
from router_proxy.engine.record import RequestRecord
from router_proxy.engine.upstream import Outgoing
from router_proxy.pipeline import RoutePlan
from router_proxy.protocol import Endpoint
from router_proxy.resilience.overflow import Overflow


@dataclass(slots=True)
class Turn:
    candidates: tuple[str, ...]  # in the order they are tried
    overflow: Overflow | None = None  # what to try when an upstream finds it too long
    session: SessionTurn | None = None

    def outgoing(self, out: Outgoing, model: str) -> Outgoing:
        """What ``model`` is sent."""
        return out


class Conversations:
    """Built once per config, with the engine."""

    def __init__(
        self,
        context: ContextFit,
        serves: Callable[[str, Endpoint], bool],
        affinity: Affinity | None = None,
    ) -> None:
        self.context = context
        self.serves = serves  # whether a model's provider serves an endpoint
        self.affinity = affinity

    async def prepare(
        self,
        plan: RoutePlan,
        ctx: RequestContext,
        record: RequestRecord,
        candidates: tuple[str, ...],
    ) -> Turn:
        """``candidates``: the plan's, those that serve the request's endpoint. (Async:
        a session's binding may live in Redis.)"""
        overflow = None
        if self.context.active:
            endpoint = ctx.endpoint
            candidates, overflow = self.context.check(
                plan.decision,
                candidates,
                ctx,
                record.attempts.skipped,
                lambda model: self.serves(model, endpoint),
            )
        affinity = self.affinity
        if affinity is None or not affinity.applies(plan, ctx):
            return Turn(candidates, overflow)
        candidates, session = await affinity.begin(plan, ctx, record.client, candidates)
        if session is not None:
            record.turn = session.note
        return Turn(candidates, overflow, session)

    def answered(self, turn: Turn, record: RequestRecord) -> None:
        """A model has answered (a stream: its first event): bind the session to it."""
        if turn.session is not None and self.affinity is not None:
            self.affinity.settle(turn.session, record.attempts)
