"""Engine: takes one canonical request through admission, routing, dispatch and the
provider, and accounts for it. Every surface calls the same methods, in this order:

    admit -> route -> (complete -> answered) | (open_stream -> relay)

and ``failed`` for an error that ends the request before its answer. No HTTP here: a
surface reads its request and writes its answer (server/surfaces).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from router_proxy.cache.entry import CachedAnswer
from router_proxy.cache.response_cache import ResponseCache, replayed_completion, replayed_stream
from router_proxy.config.schema import ServerConfig
from router_proxy.context import RequestContext
from router_proxy.engine import traced
from router_proxy.engine.accounting import Accounting
from router_proxy.engine.auth import ClientAuth
from router_proxy.engine.conversation import Conversations, Turn
from router_proxy.engine.multi_call.runner import MultiCall
from router_proxy.engine.record import RequestRecord
from router_proxy.engine.shadow import ShadowSampler
from router_proxy.engine.upstream import Outgoing, Upstream, unreadable
from router_proxy.errors import GatewayError, InvalidRequestError
from router_proxy.observability.metrics import Metrics
from router_proxy.pipeline import Pipeline, RoutePlan
from router_proxy.protocol import Endpoint
from router_proxy.providers.base import ChatStream, Completion
from router_proxy.records.recorder import Recorder
from router_proxy.resilience.dispatch import Attempt, Dispatcher, Outcome
from router_proxy.resilience.rate_limits import RateLimits

if TYPE_CHECKING:
    from router_proxy.observability.tracing import Tracing

logger = logging.getLogger("router_proxy.engine")

T = TypeVar("T")
# Renders an error as the surface's own last stream event (headers are gone by then).
ErrorEvent = Callable[[GatewayError], bytes]


CACHED_STREAM_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class OpenedStream:
    """A stream the upstream has started answering: its first event is in hand."""

    stream: ChatStream
    first: bytes
    deadline: float  # loop time: the call's total timeout, however slowly it is read


class Engine:
    def __init__(
        self,
        *,
        settings: ServerConfig,
        auth: ClientAuth,
        limits: RateLimits,
        pipeline: Pipeline,
        dispatcher: Dispatcher,
        upstream: Upstream,
        accounting: Accounting,
        metrics: Metrics,
        conversations: Conversations,
        cache: ResponseCache | None = None,
        records: Recorder | None = None,
        shadow: ShadowSampler | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings  # body and message limits the surfaces apply
        self.auth = auth
        self.limits = limits
        self.pipeline = pipeline
        self.dispatcher = dispatcher
        self.upstream = upstream
        self.accounting = accounting
        self.metrics = metrics
        self.conversations = conversations
        self.cache = cache  # None: no decision caches, and no request pays for looking
        self.records = records  # None: the policy records nothing (and pays nothing)
        self.shadow = shadow  # None: no decision shadows
        # Cascades and aggregates (RoutePlan.calls); a plan without them never looks here.
        self.multi_call = MultiCall(dispatcher, upstream, accounting.cost, conversations)
        # None: not traced; else the surfaces begin each request's trace (record.trace).
        self.tracing = tracing

    def authenticate(self, record: RequestRecord, credential: str | None) -> None:
        """``credential``: the client's ``Authorization`` value (or the surface's own
        header, as ``Bearer KEY``)."""
        record.client = self.auth.check(credential)

    async def admit(self, record: RequestRecord, credential: str | None) -> None:
        """The client's key, then its request limit."""
        self.authenticate(record, credential)
        if self.limits.enabled:
            await self.limits.admit_client(record.client)

    async def admit_client(self, credential: str | None) -> str:
        """``admit`` for work that keeps no record (counting tokens): the client's id."""
        client = self.auth.check(credential)
        if self.limits.enabled:
            await self.limits.admit_client(client)
        return client

    async def route(self, ctx: RequestContext, record: RequestRecord) -> RoutePlan:
        record.stream = ctx.request.stream
        preferences = self.conversations.preferences
        ctx.preferences = preferences.read(ctx, record.client)  # before selectors read it
        if record.trace is None:
            plan = await self.pipeline.route(ctx)
        else:
            plan = await traced.route(self.pipeline, ctx, record.trace)
        if ctx.preferences is not None:
            plan = preferences.apply(plan, ctx)
        record.plan = plan
        self.metrics.routing_seconds.observe(plan.routing_seconds)
        if self.records is not None:
            record.sample = self.records.sample(plan, ctx)
        return plan

    async def complete(self, ctx: RequestContext, record: RequestRecord) -> Completion:
        """The whole answer from the first candidate that gives one, charged to the
        budgets; ``answered`` accounts for it once it has been sent. A cached answer
        calls no model."""
        plan, upstream = self._plan(record), self.upstream
        if self.cache is not None and (hit := await self._cached(ctx, record, plan)):
            cached = replayed_completion(hit)
            if record.sample is not None and record.sample.content is not None:
                record.sample.content.keep(cached.body, cached.native)
            return cached
        out = await _outgoing(self.pipeline, plan, ctx)
        if plan.calls is not None and ctx.endpoint == "chat":
            completion = await self.multi_call.complete(plan, ctx, record, out)
            if self.shadow is not None:
                self._draw_shadow(plan, ctx, out, record)
            await self.accounting.charge(record)
            self._keep(record, completion, record.model or plan.model)
            return completion
        # The candidates tried, in order (context windows, session affinity): no await
        # when nothing applies.
        candidates, conversations = self._serving(plan, ctx.endpoint), self.conversations
        turn = conversations.plain(ctx, candidates) or await self._prepare(
            plan, ctx, record, candidates
        )

        async def attempt(model: str, left: float | None) -> Completion:
            outgoing = turn.outgoing(out, model)
            return await upstream.complete(outgoing, model, left, record.request_id)

        outcome = await self._dispatch(turn, attempt, record)
        record.upstream_seconds = outcome.seconds
        record.usage = outcome.result.usage
        if self.shadow is not None:
            self._draw_shadow(plan, ctx, out, record)
        await self.accounting.charge(record)
        self._keep(record, outcome.result, outcome.model)
        return outcome.result

    def answered(self, record: RequestRecord) -> None:
        """A whole answer has been sent: metrics and the log line. (After sending, not
        before: the client does not wait for them.) Then the shadow calls, if sampled."""
        self.accounting.finish(record, 200)
        if record.shadow is not None and self.shadow is not None:
            self.shadow.start(record.shadow, record.model, _own_answers(record))

    async def open_stream(self, ctx: RequestContext, record: RequestRecord) -> OpenedStream:
        """A stream from the first candidate whose first event arrives; ``relay`` then
        sends it, and accounts for it at its end. A cached stream calls no model."""
        plan, upstream = self._plan(record), self.upstream
        if self.cache is not None and (hit := await self._cached(ctx, record, plan)):
            stream, first = replayed_stream(hit)
            # No upstream to hold: the client may read a cached answer as slowly as this.
            deadline = asyncio.get_running_loop().time() + CACHED_STREAM_SECONDS
            return OpenedStream(stream, first, deadline)
        out = await _outgoing(self.pipeline, plan, ctx)
        if plan.calls is not None and ctx.endpoint == "chat":
            opened = await self.multi_call.open_stream(plan, ctx, record, out)
            if self.shadow is not None:
                self._draw_shadow(plan, ctx, out, record)
            return OpenedStream(*opened)
        # The candidates tried, in order (context windows, session affinity): no await
        # when nothing applies.
        candidates, conversations = self._serving(plan, ctx.endpoint), self.conversations
        turn = conversations.plain(ctx, candidates) or await self._prepare(
            plan, ctx, record, candidates
        )

        async def attempt(model: str, left: float | None) -> tuple[ChatStream, bytes, float]:
            return await upstream.open_stream(
                turn.outgoing(out, model), model, left, record.request_id
            )

        outcome = await self._dispatch(turn, attempt, record)
        if self.shadow is not None:
            self._draw_shadow(plan, ctx, out, record)
        return OpenedStream(*outcome.result)

    async def relay(
        self, opened: OpenedStream, record: RequestRecord, error_event: ErrorEvent
    ) -> AsyncGenerator[bytes, None]:
        """The stream's events as the upstream sends them. A failure after the first
        byte ends the stream with ``error_event`` (never a silent, truncated success)
        and counts against the model like any failed call. A stream to be cached is kept
        as it goes, and stored only once it has ended normally."""
        stream = opened.stream
        tee = self.cache.tee(record.cache) if self.cache is not None else None
        # A sampled record that keeps content: the answer's blocks, as relayed.
        kept = _kept(record, stream.native) if record.sample is not None else None
        try:
            if tee is not None:
                tee.add(opened.first)
            if kept is not None:
                kept.append(opened.first)
            yield opened.first
            async for chunk in stream.chunks:
                if tee is not None:
                    tee.add(chunk)
                if kept is not None:
                    kept.append(chunk)
                yield chunk
            if tee is not None and self.cache is not None and record.cache is not None:
                self.cache.keep_stream(record.cache, tee, stream, record.model)
        except GatewayError as exc:
            record.error = exc
            if record.model is not None:
                self.dispatcher.feedback.failed(record.model, exc)
            yield error_event(exc)
        except Exception as exc:
            # Only the provider's iterator runs in this try: what it raises while reading
            # the upstream is the upstream's failure, as before the first byte.
            error = unreadable(record.model or "-", exc)
            record.error = error
            if record.model is not None:
                self.dispatcher.feedback.failed(record.model, error)
            yield error_event(error)
        except asyncio.CancelledError:
            # The client left, or shutdown's grace ran out: the log line must not read as
            # a complete answer.
            record.error = GatewayError("stream ended before its last event", code="stream_cut")
            raise
        finally:
            if record.cache is not None and self.cache is not None:
                self.cache.ended(record.cache)  # a flight it led without an answer is over
            try:
                await stream.chunks.aclose()
            finally:
                # Accounting never raises (it logs instead): whatever happens here, the
                # caller's own finally (the runtime's count, the in-flight gauge) runs.
                record.usage = stream.stats.usage
                if record.call_started is not None:
                    record.upstream_seconds = time.perf_counter() - record.call_started
                self.accounting.charge_later(record)
                self.accounting.finish(record, 200)
                # The stream's last byte has gone: shadow only a whole answer.
                if record.shadow is not None and record.error is None and self.shadow is not None:
                    self.shadow.start(record.shadow, record.model, _own_answers(record))

    def failed(self, record: RequestRecord, error: GatewayError) -> None:
        """The request ends with ``error`` before any answer was sent."""
        record.error = error
        if record.cache is not None and self.cache is not None:
            self.cache.ended(record.cache)  # its followers call the upstream themselves
        self.accounting.finish(record, error.status_code)

    async def _cached(
        self, ctx: RequestContext, record: RequestRecord, plan: RoutePlan
    ) -> CachedAnswer | None:
        """The stored answer for this request, if its decision caches and has one."""
        assert self.cache is not None
        use = record.cache = self.cache.begin(ctx, plan.decision, record.client)
        if use is None:
            return None
        if record.trace is None:
            hit = await self.cache.lookup(use)
        else:
            hit = await traced.lookup(self.cache, use, record.trace)
        if hit is not None:
            record.usage = hit.usage
        return hit

    def _keep(self, record: RequestRecord, completion: Completion, model: str) -> None:
        """A whole answer, for the cache (its decision caches) and for the decision
        record (it is sampled with content)."""
        if self.cache is not None and record.cache is not None:
            self.cache.keep_whole(record.cache, completion, model)
        if record.sample is not None and record.sample.content is not None:
            record.sample.content.keep(completion.body, completion.native)

    def _draw_shadow(
        self, plan: RoutePlan, ctx: RequestContext, out: Outgoing, record: RequestRecord
    ) -> None:
        """Whether this request is shadowed; a shadowed request's served record is kept
        (with its content: the config requires it), so its shadow answers join a prompt."""
        assert self.shadow is not None
        record.shadow = self.shadow.draw(plan.decision, ctx, out)
        recorded = record.sample is not None and record.sample.recorded
        if record.shadow is not None and self.records is not None and not recorded:
            record.sample = self.records.sample(plan, ctx, always=True)

    async def _dispatch(self, turn: Turn, attempt: Attempt[T], record: RequestRecord) -> Outcome[T]:
        """The turn's candidates tried in order (a span per attempt when traced); the
        answering call noted on the record and the conversation."""
        if record.trace is not None:
            attempt = traced.attempts(
                attempt, record.trace, record.attempts, self.dispatcher.models
            )
        outcome = await self.dispatcher.run(
            turn.candidates, attempt, record.attempts, turn.overflow, turn.permitted
        )
        self.conversations.answered(turn, record)
        record.call_started = outcome.started
        record.first_byte_seconds = outcome.seconds
        return outcome

    async def _prepare(
        self,
        plan: RoutePlan,
        ctx: RequestContext,
        record: RequestRecord,
        candidates: tuple[str, ...],
    ) -> Turn:
        """The conversation's step when it has work (affinity, context windows)."""
        prepare = self.conversations.prepare
        if record.trace is None:
            return await prepare(plan, ctx, record, candidates)
        return await traced.conversation(
            lambda: prepare(plan, ctx, record, candidates), record, record.trace
        )

    def _serving(self, plan: RoutePlan, endpoint: Endpoint) -> tuple[str, ...]:
        """The plan's candidates whose provider serves ``endpoint``, in order; a request
        no candidate can serve is the client's to fix (400)."""
        if endpoint == "chat":  # every provider serves chat
            return plan.candidates
        serving = tuple(m for m in plan.candidates if self.upstream.serves(m, endpoint))
        if not serving:
            raise InvalidRequestError(
                f"No candidate of decision '{plan.decision}' serves /v1/{endpoint} (its "
                f"models' providers cannot): route it to a model whose provider does",
                param="model",
                code="unsupported_endpoint",
            )
        return serving

    @staticmethod
    def _plan(record: RequestRecord) -> RoutePlan:
        if record.plan is None:
            raise RuntimeError("route() before calling an upstream")
        return record.plan


def _own_answers(record: RequestRecord) -> frozenset[str]:
    """The models a cascade's or aggregate's own calls had answer (none for one call)."""
    return record.calls.answered_by() if record.calls is not None else frozenset()


def _kept(record: RequestRecord, native: bool) -> list[bytes] | None:
    """Where a stream's blocks are kept for its decision record (None: not kept)."""
    content = record.sample.content if record.sample is not None else None
    if content is None:
        return None
    content.native = native
    return content.answer


async def _outgoing(pipeline: Pipeline, plan: RoutePlan, ctx: RequestContext) -> Outgoing:
    """The body after the decision's plugins, and the client's own body for a provider
    that speaks its wire format; only without plugins (they rewrite chat bodies: a system
    prompt, redaction), so a native call never skips what the policy asks for."""
    native = ctx.native_body if not plan.plugins else None
    body = await pipeline.outgoing_body(plan, ctx)  # off the loop when heavy
    return Outgoing(body, ctx.endpoint, ctx.native_format, native)
