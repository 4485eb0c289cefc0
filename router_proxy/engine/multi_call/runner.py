"""The engine's entry to multi-call plans: a cascade's or an aggregate's calls, then the
chosen answer as one completion or stream, with every call in the request's note."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from router_proxy.context import RequestContext
from router_proxy.engine.multi_call import aggregate, cascade
from router_proxy.engine.multi_call.calls import Call, Caller, Price, whole_body
from router_proxy.engine.multi_call.emit import live, replayed, whole
from router_proxy.engine.multi_call.note import MultiCallNote
from router_proxy.engine.record import RequestRecord
from router_proxy.engine.upstream import Outgoing, Upstream
from router_proxy.errors import GatewayError, UpstreamError
from router_proxy.providers.base import ChatStream, Completion
from router_proxy.resilience.dispatch import Dispatcher
from router_proxy.selection.aggregate import AggregatePlan
from router_proxy.selection.cascade import CascadePlan
from router_proxy.selection.multi_call import MultiCallPlan

# A decided answer replayed as a stream holds no upstream: the client may read it this slowly.
REPLAYED_STREAM_SECONDS = 600.0
Opened = tuple[ChatStream, bytes, float]


class MultiCall:
    """Built once per config, with the engine."""

    def __init__(self, dispatcher: Dispatcher, upstream: Upstream, price: Price) -> None:
        self.dispatcher = dispatcher
        self.upstream = upstream
        self.price = price

    def _begin(
        self,
        plan: MultiCallPlan,
        record: RequestRecord,
        permitted: Callable[[str], bool] | None,
    ) -> tuple[Caller, MultiCallNote]:
        note = record.calls = MultiCallNote(plan.kind)
        record.call_started = time.perf_counter()
        # One deadline for all the request's calls: a stage may not restart the clock.
        deadline = self.dispatcher.request_deadline()
        caller = Caller(self.dispatcher, self.upstream, self.price, record, permitted, deadline)
        return caller, note

    async def complete(
        self,
        plan: MultiCallPlan,
        ctx: RequestContext,
        record: RequestRecord,
        out: Outgoing,
        permitted: Callable[[str], bool] | None = None,
    ) -> Completion:
        caller, note = self._begin(plan, record, permitted)
        question = ctx.text("last_user")
        if isinstance(plan, CascadePlan):
            chosen = await cascade.decide(plan, caller, out, question, note)
            if chosen is None:
                stage, index = cascade.last_stage(plan)
                call = await self._stage(caller, stage, whole_body(out), index, note)
                chosen = _answer_or_earlier(call, note)
        else:
            assert isinstance(plan, AggregatePlan)
            chosen = await self._aggregate(plan, caller, out, question, note)
        self._finish(record, chosen)
        record.upstream_seconds = record.first_byte_seconds
        record.usage = note.usage()
        return whole(chosen, note)

    async def open_stream(
        self,
        plan: MultiCallPlan,
        ctx: RequestContext,
        record: RequestRecord,
        out: Outgoing,
        permitted: Callable[[str], bool] | None = None,
    ) -> Opened:
        """A decided answer replayed as a stream, or the last call's own stream live
        (the last stage of a cascade, a refiner): nothing judges it any more."""
        caller, note = self._begin(plan, record, permitted)
        question = ctx.text("last_user")
        streamed = replace(out, native_body=None)
        if isinstance(plan, CascadePlan):
            chosen = await cascade.decide(plan, caller, out, question, note)
            if chosen is None:
                stage, index = cascade.last_stage(plan)
                return await self._live(caller, stage, streamed, index, note, record)
        else:
            assert isinstance(plan, AggregatePlan)
            calls = await aggregate.run_panel(plan, caller, out, note)
            if plan.refiner is None:
                chosen = aggregate.vote(plan, calls, question)
            else:
                asked = aggregate.refining(plan, calls, question, out)
                asked = replace(asked, body=asked.body | _streaming(out))
                return await self._live(caller, (plan.refiner.model,), asked, 1, note, record)
        self._finish(record, chosen)
        options = out.body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        stream, first = replayed(chosen, note, include_usage)
        deadline = asyncio.get_running_loop().time() + REPLAYED_STREAM_SECONDS
        return stream, first, deadline

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
        asked = whole_body(aggregate.refining(plan, calls, question, out))
        refined = await self._stage(caller, (plan.refiner.model,), asked, 1, note)
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
    ) -> Call:
        """One call as a stage of its own (the last stage, a refiner): its first model,
        the rest its fallbacks."""
        call = await caller.complete(models, out, index)
        note.calls.append(call)
        note.stage_seconds.append(call.seconds)
        call.reason = "answered" if call.returnable else "failed"
        return call

    async def _live(
        self,
        caller: Caller,
        models: tuple[str, ...],
        out: Outgoing,
        index: int,
        note: MultiCallNote,
        record: RequestRecord,
    ) -> Opened:
        try:
            outcome = await caller.open_stream(models, out)
        except GatewayError as exc:
            note.calls.append(Call(models[0], index, error=exc, reason="failed"))
            earlier = cascade.earliest(note)
            if earlier is None:
                raise
            earlier.reason = "answered"
            self._finish(record, earlier)
            options = out.body.get("stream_options")
            include = isinstance(options, dict) and bool(options.get("include_usage"))
            stream, first = replayed(earlier, note, include)
            return stream, first, asyncio.get_running_loop().time() + REPLAYED_STREAM_SECONDS
        final = Call(outcome.model, index, outcome.seconds, reason="answered")
        note.calls.append(final)
        note.stage_seconds.append(outcome.seconds)
        self._finish(record, final)
        stream, first, deadline = outcome.result
        relayed, first = live(stream, first, final, note, self.price)
        return relayed, first, deadline

    @staticmethod
    def _finish(record: RequestRecord, chosen: Call) -> None:
        record.attempts.model = chosen.model
        if record.call_started is not None:
            record.first_byte_seconds = time.perf_counter() - record.call_started


def _answer_or_earlier(call: Call, note: MultiCallNote) -> Call:
    """The last stage's answer; when it failed, the earliest answer a stage gave."""
    if call.returnable:
        return call
    earlier = cascade.earliest(note)
    if earlier is None:
        raise call.error or UpstreamError(f"model '{call.model}' gave no answer")
    earlier.reason = "answered"
    return earlier


def _streaming(out: Outgoing) -> dict[str, object]:
    """The client's streaming fields, for a call of the gateway's own that streams."""
    return {k: out.body[k] for k in ("stream", "stream_options") if k in out.body}
