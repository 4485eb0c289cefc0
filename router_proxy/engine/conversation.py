"""One turn of a conversation, between routing and dispatch: which of the plan's
candidates are tried, in which order, what the dispatcher does when an upstream finds
the prompt too long, what each model is sent, and what the session is bound to
afterwards.

    prepare (context windows, then affinity) -> dispatch (Turn.outgoing per attempt)
      -> answered (the binding; a switch of model noted)

A model other than the one bound to the session (it wrote the history) gets the history
made valid for it (``translate/history.py``); the log line's ``switch`` says from which
model, why, and what changed.

``context_fit.py`` and ``affinity.py`` hold each step's rules; with neither configured
(no window declared, affinity off) a turn costs two attribute reads. A cascade's or
aggregate's calls take the same steps, each call its own (``multi_call/turn.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from router_proxy.context import RequestContext
from router_proxy.engine import context_fit
from router_proxy.engine.affinity import Affinity, SessionTurn
from router_proxy.engine.context_fit import ContextFit
from router_proxy.engine.preferences import PreferencePolicies
from router_proxy.engine.record import RequestRecord
from router_proxy.engine.turn_note import Switch
from router_proxy.engine.upstream import Outgoing
from router_proxy.pipeline import RoutePlan
from router_proxy.protocol import Endpoint
from router_proxy.resilience.overflow import Overflow
from router_proxy.translate.history import chat_for_switch, messages_for_switch

MESSAGES = "anthropic.messages"  # the Messages surface's wire format


Native = Callable[[Outgoing, str], bool]  # whether a model gets the client's own body


@dataclass(slots=True)
class Turn:
    candidates: tuple[str, ...]  # in the order they are tried
    overflow: Overflow | None = None  # what to try when an upstream finds it too long
    session: SessionTurn | None = None
    native: Native | None = None
    permitted: Callable[[str], bool] | None = None  # the models the caller allows
    # For each model the history was made valid for: what that changed.
    changed: dict[str, list[str]] | None = None
    # Per wire format: the body it was made from, the body made, what changed. (A
    # multi-call request sends several bodies: each is made valid when first sent.)
    _switched: dict[bool, tuple[Outgoing, Outgoing, list[str]]] | None = None

    def outgoing(self, out: Outgoing, model: str) -> Outgoing:
        """What ``model`` is sent: the request as it is, unless the model that wrote the
        conversation so far was another one (``translate/history.py``)."""
        if self.session is None:
            return out
        previous = self.session.previous
        if previous is None or model == previous or self.native is None:
            return out
        native = self.native(out, model)
        if self._switched is None:
            self._switched, self.changed = {}, {}
        made = self._switched.get(native)
        if made is None or made[0] is not out:
            made = self._switched[native] = (out, *switched(out, native))
        assert self.changed is not None
        self.changed[model] = made[2]
        return made[1]


def switched(out: Outgoing, native: bool) -> tuple[Outgoing, list[str]]:
    """``out`` made valid for a model that did not write its history: the client's own
    Messages body for an Anthropic model, else the chat body."""
    if native:
        if out.native_format != MESSAGES or out.native_body is None:
            return out, []
        body, changed = messages_for_switch(out.native_body)
        return replace(out, native_body=body), changed
    if out.endpoint != "chat":
        return out, []
    body, changed = chat_for_switch(out.body)
    return replace(out, body=body), changed


class Conversations:
    """Built once per config, with the engine."""

    def __init__(
        self,
        context: ContextFit,
        serves: Callable[[str, Endpoint], bool],
        native: Native,
        preferences: PreferencePolicies,
        affinity: Affinity | None = None,
    ) -> None:
        self.context = context
        self.serves = serves  # whether a model's provider serves an endpoint
        self.native = native
        self.preferences = preferences
        self.affinity = affinity

    def plain(self, ctx: RequestContext, candidates: tuple[str, ...]) -> Turn | None:
        """The turn when nothing applies to it (no window declared, affinity off, no
        preferences): the candidates as they are; else None (``prepare`` then)."""
        if self.context.active or self.affinity is not None or ctx.preferences is not None:
            return None
        return Turn(candidates)

    def dry_run(self, plan: RoutePlan, ctx: RequestContext) -> dict[str, Any] | None:
        """The context windows' part of a dry run (``context_fit.dry_run``); a cascade's or
        aggregate's models are each judged for the client's request, but have no order."""
        reachable = self._reachable(ctx, self._permitted(ctx))
        shown = context_fit.dry_run(self.context, plan.decision, plan.candidates, ctx, reachable)
        if shown is not None and plan.calls is not None:
            del shown["order"]
        return shown

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
        permitted = self._permitted(ctx)
        if self.context.active:
            candidates, overflow = self.context.check(
                plan.decision,
                candidates,
                ctx,
                record.attempts.skipped,
                self._reachable(ctx, permitted),
            )
        affinity = self.affinity
        session = None
        if affinity is not None and affinity.applies(plan, ctx):
            candidates, session = await affinity.begin(plan, ctx, record.client, candidates)
        if session is None:
            return Turn(candidates, overflow, permitted=permitted)
        record.turn = session.note
        return Turn(candidates, overflow, session, self.native, permitted)

    def _permitted(self, ctx: RequestContext) -> Callable[[str], bool] | None:
        return self.preferences.permitted(ctx) if ctx.preferences is not None else None

    def _reachable(
        self, ctx: RequestContext, permitted: Callable[[str], bool] | None
    ) -> Callable[[str], bool]:
        """Whether a model may take the request: its provider serves the endpoint, and
        the caller's preferences allow it."""
        endpoint, serves = ctx.endpoint, self.serves

        def reachable(model: str) -> bool:
            return serves(model, endpoint) and (permitted is None or permitted(model))

        return reachable

    def answered(self, turn: Turn, record: RequestRecord) -> None:
        """A model has answered (a stream: its first event): bind the session to it,
        and note a switch away from the model that wrote the history."""
        session = turn.session
        if session is None or self.affinity is None:
            return
        self.affinity.settle(session, record.attempts)
        previous, answered = session.previous, record.attempts.model
        if previous is not None and answered is not None and answered != previous:
            note = session.note
            changed = (turn.changed or {}).get(answered, [])
            note.switch = Switch(previous, note.reason or "failed", changed)
