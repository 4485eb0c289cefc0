"""The engine's entry to multi-call plans: a cascade's or an aggregate's calls, then the
chosen answer as one completion or stream, with every call in the request's note.

The request's calls share one deadline, one retry budget (``max_attempts`` for the
request: ``resilience/attempt_budget.py``) and, when its conversation asks for it, one
turn (``turn.py``: context windows per call, the session's history and binding)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from router_proxy.context import RequestContext
from router_proxy.engine import traced
from router_proxy.engine.conversation import Conversations
from router_proxy.engine.multi_call import aggregate, cascade
from router_proxy.engine.multi_call import turn as turns
from router_proxy.engine.multi_call.calls import (
    PASSED_OVER,
    Call,
    Caller,
    Price,
    asking,
    role_of,
    whole_body,
)
from router_proxy.engine.multi_call.emit import live, replayed, whole
from router_proxy.engine.multi_call.fit import PassedOver
from router_proxy.engine.multi_call.note import MultiCallNote
from router_proxy.engine.record import RequestRecord
from router_proxy.engine.upstream import Outgoing, Upstream
from router_proxy.errors import GatewayError, UpstreamError
from router_proxy.pipeline import RoutePlan
from router_proxy.providers.base import ChatStream, Completion
from router_proxy.resilience.attempt_budget import AttemptBudget
from router_proxy.resilience.dispatch import Dispatcher
from router_proxy.selection.aggregate import AggregatePlan
from router_proxy.selection.cascade import CascadePlan
from router_proxy.selection.multi_call import MultiCallPlan

# A decided answer replayed as a stream holds no upstream: the client may read it this slowly.
REPLAYED_STREAM_SECONDS = 600.0
Opened = tuple[ChatStream, bytes, float]


class MultiCall:
    """Built once per config, with the engine."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        upstream: Upstream,
        price: Price,
        conversations: Conversations,
    ) -> None:
        self.dispatcher = dispatcher
        self.upstream = upstream
        self.price = price
        self.conversations = conversations

    async def _begin(
        self, plan: RoutePlan, ctx: RequestContext, record: RequestRecord
    ) -> tuple[MultiCallPlan, Caller, MultiCallNote]:
        calls = plan.calls
        assert calls is not None
        note = record.calls = MultiCallNote(calls.kind)
        conversations, dispatcher = self.conversations, self.dispatcher
        permitted = conversations.preferences.permitted(ctx)
        calls_turn = None
        if turns.applies(conversations):  # else no await, nothing made
            models = dispatcher.models

            def begin() -> Awaitable[turns.CallsTurn | None]:
                return turns.begin(conversations, plan, ctx, record, models, permitted)

            if record.trace is None:
                calls_turn = await begin()
            else:
                calls_turn = await traced.conversation(begin, record, record.trace)
        record.call_started = time.perf_counter()
        # One deadline and one retry budget for all the request's calls: a stage may not
        # restart the clock, nor bring a fresh max_attempts.
        caller = Caller(
            dispatcher,
            self.upstream,
            self.price,
            record,
            permitted,
            deadline=dispatcher.request_deadline(),
            budget=AttemptBudget(dispatcher.retries.max_attempts),
            turn=calls_turn,
        )
        return calls, caller, note

    async def complete(
        self, plan: RoutePlan, ctx: RequestContext, record: RequestRecord, out: Outgoing
    ) -> Completion:
        calls, caller, note = await self._begin(plan, ctx, record)
        question = ctx.text("last_user")
        if isinstance(calls, CascadePlan):
            chosen = await cascade.decide(calls, caller, out, question, note)
            if chosen is None:
                stage, index = cascade.last_stage(calls)
                call = await self._stage(caller, stage, whole_body(out), index, note)
                chosen = _answer_or_earlier(call, note)
        else:
            assert isinstance(calls, AggregatePlan)
            chosen = await self._aggregate(calls, caller, out, question, note)
        self._finish(caller, chosen)
        record.upstream_seconds = record.first_byte_seconds
        record.usage = note.usage()
        return whole(chosen, note)

    async def open_stream(
        self, plan: RoutePlan, ctx: RequestContext, record: RequestRecord, out: Outgoing
    ) -> Opened:
        """A decided answer replayed as a stream, or the last call's own stream live
        (the last stage of a cascade, a refiner): nothing judges it any more."""
        calls, caller, note = await self._begin(plan, ctx, record)
        question = ctx.text("last_user")
        streamed = replace(out, native_body=None)
        if isinstance(calls, CascadePlan):
            chosen = await cascade.decide(calls, caller, out, question, note)
            if chosen is None:
                stage, index = cascade.last_stage(calls)

                def earlier() -> Call | None:
                    return cascade.earlier_answer(note)

                return await self._live(caller, stage, streamed, index, note, earlier)
        else:
            assert isinstance(calls, AggregatePlan)
            panel = await aggregate.run_panel(calls, caller, out, note)
            if calls.refiner is None:
                chosen = aggregate.vote(calls, panel, question)
            else:
                prompt = aggregate.refining(calls, panel, question)
                asked = asking(out, prompt)
                asked = replace(asked, body=asked.body | _streaming(out))

                def voted() -> Call | None:
                    return aggregate.vote(calls, panel, question)

                refiner = (calls.refiner.model,)
                return await self._live(caller, refiner, asked, 1, note, voted, prompt)
        self._finish(caller, chosen)
        return self._replay(chosen, note, out)

    async def _aggregate(
        self,
        plan: AggregatePlan,
        caller: Caller,
        out: Outgoing,
        question: str,
        note: MultiCallNote,
    ) -> Call:
        calls = await aggregate.run_panel(plan, caller, out, note)
        if plan.refiner is None:
            return aggregate.vote(plan, calls, question)
        prompt = aggregate.refining(plan, calls, question)
        asked = whole_body(asking(out, prompt))
        refined = await self._stage(caller, (plan.refiner.model,), asked, 1, note, prompt)
        if refined.returnable:
            return refined
        return aggregate.vote(plan, calls, question)  # the refiner failed: the panel decides

    async def _stage(
        self,
        caller: Caller,
        models: tuple[str, ...],
        out: Outgoing,
        index: int,
        note: MultiCallNote,
        prompt: str | None = None,
    ) -> Call:
        """One call as a stage of its own (the last stage, a refiner): its first model,
        the rest its fallbacks."""
        call = await caller.complete(models, out, index, answers=True, prompt=prompt)
        note.calls.append(call)
        note.stage_seconds.append(call.seconds)
        if call.called:
            call.reason = "answered" if call.returnable else "failed"
        return call

    async def _live(
        self,
        caller: Caller,
        models: tuple[str, ...],
        out: Outgoing,
        index: int,
        note: MultiCallNote,
        otherwise: Callable[[], Call | None],
        prompt: str | None = None,
    ) -> Opened:
        """The last call streamed live; when it cannot be made or fails before its first
        event, ``otherwise``'s answer replayed (an earlier stage's, the panel's vote)."""
        failure: GatewayError | None = None
        role = role_of(prompt)
        try:
            outcome = await caller.open_stream(models, out, prompt)
        except PassedOver as over:
            passed = Call(
                models[0], index, error=over.error, reason=PASSED_OVER, role=role, called=False
            )
            note.calls.append(passed)
        except GatewayError as exc:
            note.calls.append(Call(models[0], index, error=exc, reason="failed", role=role))
            failure = exc
        else:
            final = Call(
                outcome.model, index, outcome.seconds, reason="answered", role=role, streamed=True
            )
            note.calls.append(final)
            note.stage_seconds.append(outcome.seconds)
            self._finish(caller, final)
            stream, first, deadline = outcome.result
            relayed, first = live(stream, first, final, note, self.price)
            return relayed, first, deadline
        instead = otherwise()
        if instead is None:
            raise failure or note.failure()
        self._finish(caller, instead)
        return self._replay(instead, note, out)

    @staticmethod
    def _replay(chosen: Call, note: MultiCallNote, out: Outgoing) -> Opened:
        options = out.body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        stream, first = replayed(chosen, note, include_usage)
        return stream, first, asyncio.get_running_loop().time() + REPLAYED_STREAM_SECONDS

    def _finish(self, caller: Caller, chosen: Call) -> None:
        """``chosen`` answers: the request's model, and its session's."""
        record = caller.record
        record.attempts.model = chosen.model
        if record.call_started is not None:
            record.first_byte_seconds = time.perf_counter() - record.call_started
        if caller.turn is not None:
            self.conversations.answered(caller.turn.turn, record)


def _answer_or_earlier(call: Call, note: MultiCallNote) -> Call:
    """The last stage's answer; when it failed, the earliest answer a stage gave."""
    if call.returnable:
        return call
    earlier = cascade.earlier_answer(note)
    if earlier is None:
        if not call.called:
            raise note.failure()
        raise call.error or UpstreamError(f"model '{call.model}' gave no answer")
    return earlier


def _streaming(out: Outgoing) -> dict[str, object]:
    """The client's streaming fields, for a call of the gateway's own that streams."""
    return {k: out.body[k] for k in ("stream", "stream_options") if k in out.body}
