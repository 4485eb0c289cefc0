"""The engine's steps as a traced request takes them (``RequestRecord.trace`` set): the
same calls, each with its span. The engine branches here once per step, only when the
request is traced, so an untraced one runs exactly the code it always did; nothing here
imports OpenTelemetry (``RequestTrace`` holds it)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from router_proxy.cache.entry import CachedAnswer
from router_proxy.cache.response_cache import CacheUse, ResponseCache
from router_proxy.config.schema import ModelConfig
from router_proxy.context import RequestContext
from router_proxy.engine.record import RequestRecord
from router_proxy.pipeline import Pipeline, RoutePlan
from router_proxy.providers.base import UPSTREAM_TRACEPARENT
from router_proxy.resilience.dispatch import Attempt, AttemptLog

if TYPE_CHECKING:
    from router_proxy.observability.tracing import AttributeValue, RequestTrace

T = TypeVar("T")


async def route(pipeline: Pipeline, ctx: RequestContext, trace: RequestTrace) -> RoutePlan:
    """``pipeline.route`` with its signals and selector timed, as the ``route`` span."""
    started = time.time_ns()
    plan = await pipeline.route(ctx, trace.signal_times)
    signals = {
        name: _signal_attributes(result.fired, result.value, name in plan.timed_out)
        for name, result in plan.signals.items()
    }
    attributes: dict[str, AttributeValue] = {
        "router.decision": plan.decision,
        "router.via": plan.via,
        "router.model": plan.model,
        "router.candidates": list(plan.candidates),
    }
    if plan.timed_out:
        attributes["router.signals_timed_out"] = list(plan.timed_out)
    trace.routed(started, time.time_ns(), attributes, signals)
    return plan


def _signal_attributes(fired: bool, value: object, timed_out: bool) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {"router.signal.fired": fired}
    if isinstance(value, str | float | int) and not isinstance(value, bool):
        attributes["router.signal.value"] = value
    if timed_out:
        attributes["router.signal.timed_out"] = True
    return attributes


def attempts(
    attempt: Attempt[T], trace: RequestTrace, log: AttemptLog, models: Mapping[str, ModelConfig]
) -> Attempt[T]:
    """``attempt`` with a span per call: which try of the model it is (``retry``), how
    many models were tried before it (``fallback``), and how it ended."""

    async def traced(model: str, left: float | None) -> T:
        tried = log.tried
        config = models.get(model)
        span = trace.attempt(
            model,
            {
                "router.model": model,
                "gen_ai.request.model": (config.upstream_model if config else None) or model,
                "router.provider": config.provider if config else "-",
                "router.attempt": len(tried),
                "router.retry": sum(1 for m, _ in tried if m == model),
                "router.fallback": len({m for m, _ in tried if m != model}),
            },
        )
        sent = UPSTREAM_TRACEPARENT.set(trace.traceparent(span))  # the upstream's parent
        try:
            result = await attempt(model, left)
        except BaseException as exc:
            trace.attempt_ended(span, exc)
            raise
        finally:
            UPSTREAM_TRACEPARENT.reset(sent)
        trace.attempt_ended(span, None)
        return result

    return traced


async def lookup(cache: ResponseCache, use: CacheUse, trace: RequestTrace) -> CachedAnswer | None:
    """``cache.lookup`` as the ``cache lookup`` span: hit or miss."""
    span = trace.child("cache lookup", time.time_ns(), {"router.decision": use.decision})
    try:
        return await cache.lookup(use)
    finally:
        span.set_attribute("router.cache.outcome", use.outcome)
        span.end()


async def conversation(
    prepare: Callable[[], Awaitable[T]], record: RequestRecord, trace: RequestTrace
) -> T:
    """The conversation's step (affinity, context windows) as its span."""
    span = trace.child("conversation", time.time_ns())
    try:
        return await prepare()
    finally:
        if record.turn is not None:
            span.set_attributes(_turn_attributes(record))
        span.end()


def end(record: RequestRecord, status: int, cost: float | None) -> None:
    """The request's span ends with what it did."""
    assert record.trace is not None
    plan, usage = record.plan, record.usage
    attributes: dict[str, Any] = {
        "router.decision": plan.decision if plan else None,
        "router.model": record.routed_model,
        "router.stream": record.stream,
        "router.attempts": record.attempts.attempts,
        "gen_ai.usage.input_tokens": usage.prompt_tokens if usage else None,
        "gen_ai.usage.output_tokens": usage.completion_tokens if usage else None,
        "router.cost_usd": cost,
        "router.cache.outcome": record.cache.outcome if record.cache is not None else None,
    }
    if record.turn is not None:
        attributes |= _turn_attributes(record)
    record.trace.end(status, attributes, record.error)


def _turn_attributes(record: RequestRecord) -> dict[str, AttributeValue]:
    turn = record.turn
    assert turn is not None
    attributes: dict[str, AttributeValue] = {"router.session": turn.session}
    if turn.affinity is not None:
        attributes["router.affinity"] = turn.affinity
    if turn.kept is not None:
        attributes["router.affinity.kept"] = turn.kept
    if turn.reason is not None:
        attributes["router.affinity.rebound"] = turn.reason
    if turn.switch is not None:
        attributes["router.switch.from"] = turn.switch.previous
        attributes["router.switch.reason"] = turn.switch.reason
    return attributes
