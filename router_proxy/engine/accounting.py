"""Accounting: what a finished request cost and how it went, written once per request.

Cost comes from the answering model's price table; tokens and dollars are charged to the
client's and the model's budgets; metrics, the JSON log line and the decision record (when
sampled) are written when the answer is complete (for a stream: when its last byte has
gone or the client has left).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from router_proxy.config.schema import ModelConfig
from router_proxy.engine import traced
from router_proxy.engine.record import RequestRecord
from router_proxy.observability.logging import log_request
from router_proxy.observability.metrics import UNKNOWN, Metrics
from router_proxy.pipeline import RoutePlan
from router_proxy.protocol import Usage
from router_proxy.records.recorder import Recorder
from router_proxy.resilience.rate_limits import RateLimits
from router_proxy.selection.budget_hold import BudgetHold

logger = logging.getLogger("router_proxy.engine")


class Accounting:
    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        metrics: Metrics,
        limits: RateLimits,
        *,
        log_requests: bool = True,
        records: Recorder | None = None,
    ) -> None:
        self.models = models
        self.metrics = metrics
        self.limits = limits
        self.log_requests = log_requests
        self.records = records  # None: the policy records nothing
        # Stream-end charges, held until done (the loop keeps only weak references).
        self._background: set[asyncio.Task[None]] = set()

    def cost(self, model: str | None, usage: Usage | None) -> float | None:
        """US$ for ``usage`` at ``model``'s prices; None when either is unknown."""
        config = self.models.get(model) if model is not None else None
        if config is None or usage is None:
            return None  # (a cached answer's model may have left the policy since)
        return config.cost.dollars(usage.prompt_tokens, usage.completion_tokens)

    async def charge(self, record: RequestRecord) -> None:
        """Tokens and dollars against the client's and the model's budgets."""
        usage, model = record.usage, record.model
        if record.cache is not None and record.cache.hit is not None:
            return  # a cached answer cost nothing
        if not self.limits.enabled:
            return
        if record.calls is not None:  # a cascade's or aggregate's: each call to its model
            for call in record.calls.calls:
                if call.usage is not None:
                    tokens, cost = call.usage.total_tokens, call.cost or 0.0
                    await self.limits.charge(record.client, call.model, tokens, cost)
        elif usage is not None and model is not None:
            cost = self.cost(model, usage) or 0.0
            await self.limits.charge(record.client, model, usage.total_tokens, cost)

    def charge_later(self, record: RequestRecord) -> None:
        """From a stream's end (maybe a client that left): off the closing generator.
        Never raises (it runs in the stream's ``finally``); a failed charge is logged."""
        if self.limits.enabled and record.usage is not None:
            task = asyncio.get_running_loop().create_task(self.charge(record))
            self._background.add(task)
            task.add_done_callback(self._charged)

    def _charged(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("charging a stream's usage failed", exc_info=task.exception())

    def finish(self, record: RequestRecord, status: int) -> None:
        """Metrics and the log line, once, when the request has ended with ``status``.
        Never raises: it runs in ``finally`` blocks whose own work (the runtime's count
        of requests in flight) must still happen; a failure is logged instead."""
        try:
            self._finish(record, status)
        except Exception:
            logger.exception("accounting failed (request %s)", record.request_id)

    def _finish(self, record: RequestRecord, status: int) -> None:
        plan, calls = record.plan, record.calls
        cost = self.cost(record.model, record.usage) if calls is None else calls.cost()
        decision, usage, saved = plan.decision if plan else UNKNOWN, record.usage, None
        if record.cache is not None:
            if record.cache.hit is not None:  # no model was paid: no tokens, no cost
                saved, cost, usage = cost, 0.0, None
            self.metrics.count_cache(decision, record.cache.outcome, saved)
        model = record.routed_model or UNKNOWN
        if calls is None:
            self.metrics.record(decision, model, status, record.upstream_seconds, usage, cost)
            self._count_attempts(record)
        else:  # tokens and dollars under each call's own model; a cascade has no fallback
            self.metrics.record(decision, model, status, record.upstream_seconds, None, None)
            self.metrics.count_calls(decision, calls.calls, calls.stage_seconds)
            self._count_attempts(record, fallbacks=False)
            planned = plan.calls if plan is not None else None
            if planned is not None and planned.hold is not None and status < 400:
                self._hold(planned.hold, planned.budget_per_1k, decision, cost)
        if self.log_requests:
            self._log(record, status, cost, saved)
        if self.records is not None:
            self.records.served(record, status, cost, usage)
        if record.trace is not None:
            traced.end(record, status, cost)

    def _hold(
        self, hold: BudgetHold, knob: float | None, decision: str, cost: float | None
    ) -> None:
        """The plan ran at ``knob`` and answered: its decision's budget hold is told what
        every call it made cost (a cached answer ran no plan, a failed request is an
        outage's, not the traffic's: neither is told; selection/budget_hold.py)."""
        hold.observe(cost or 0.0, knob if knob is not None else hold.knob)
        self.metrics.multi_call_budget.labels(decision).set(hold.knob)

    def _count_attempts(self, record: RequestRecord, *, fallbacks: bool = True) -> None:
        tried = record.attempts.tried
        for i, (model, error) in enumerate(tried):
            outcome = "success" if error is None else "retry" if i + 1 < len(tried) else "failure"
            self.metrics.count_attempt(model, outcome)
        plan, turn = record.plan, record.turn
        # The first choice: the selector's, or the model the conversation is bound to; a
        # cache hit made no attempt, so it is no fallback.
        first = turn.kept if turn is not None and turn.kept is not None else None
        answered = record.attempts.model
        if (
            fallbacks
            and plan is not None
            and answered is not None
            and answered != (first or plan.model)
        ):
            self.metrics.fallbacks.labels(plan.decision).inc()

    def _log(
        self, record: RequestRecord, status: int, cost: float | None, saved: float | None
    ) -> None:
        plan, usage = record.plan, record.usage
        log_request(
            dict(
                request_id=record.request_id,
                method=record.method,
                path=record.path,
                surface=record.surface,
                status=status,
                stream=record.stream,
                decision=plan.decision if plan else None,
                model=record.routed_model,
                attempts=record.attempts.attempts or None,
                # [model, why] for each candidate passed over: breaker_open, context, ...
                skipped=[list(s) for s in record.attempts.skipped] or None,
                via=plan.via if plan else None,
                latency_ms=_ms(time.perf_counter() - record.started),
                routing_ms=round(plan.routing_seconds * 1000, 3) if plan else None,
                signals_timed_out=list(plan.timed_out) if plan and plan.timed_out else None,
                first_byte_ms=_ms(record.first_byte_seconds),
                upstream_ms=_ms(record.upstream_seconds),
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                cost_usd=cost,
                error=record.error.code if record.error else None,
                dropped=list(record.dropped) or None,
                **(record.turn.log_fields() if record.turn is not None else {}),
                cache=record.cache.outcome if record.cache is not None else None,
                saved_usd=saved,
                **(record.calls.log_fields() if record.calls is not None else {}),
                **_knob(plan),
                **({"trace_id": record.trace.trace_id} if record.trace is not None else {}),
            )
        )


def _knob(plan: RoutePlan | None) -> dict[str, float]:
    """A trained cascade's knob for this request (its budget hold's, when held)."""
    knob = plan.calls.budget_per_1k if plan is not None and plan.calls is not None else None
    return {"budget_per_1k": round(knob, 6)} if knob is not None else {}


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 3) if seconds is not None else None
