"""Shadow sampling: a share of a decision's answered requests is also sent to other models
of its pool, in the background, once the client has its whole answer; each call's answer
is written as a ``shadow`` record (shared_formats.md) beside the served one, so
``router-proxy train --records`` can learn routing from live traffic without labels.

Off the response path by construction: ``draw`` (after the answering call, no await) only
decides and copies the body; ``start`` runs after the answer has been sent (the engine's
``answered``, or a stream's end) and only creates tasks. The calls go straight to the
provider (``Upstream.complete``), not through dispatch: no retries, no fallbacks, and no
breaker or latency feedback, since those route live traffic and a shadow call's failure
(e.g. a model the policy does not serve live) must not move it. Bounded: at most
``max_concurrent`` calls of a decision in flight (more are dropped and counted), and none
once the decision's ``budget_usd_per_day`` is spent (priced with the models' ``cost``;
calls already in flight may overshoot it by their own cost). Failures are counted and
recorded, never raised. ``aclose`` (shutdown, or the runtime retired by a reload) cancels
what is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from router_proxy.config.schema import Config, ModelConfig
from router_proxy.config.shadow import ShadowConfig
from router_proxy.context import RequestContext
from router_proxy.engine.upstream import Outgoing, Upstream
from router_proxy.errors import GatewayError
from router_proxy.observability.metrics import Metrics
from router_proxy.pipeline import route_candidates
from router_proxy.protocol import Usage
from router_proxy.records.answer_text import answer_text
from router_proxy.records.usage import usage_fields

logger = logging.getLogger("router_proxy.shadow")


class Sink(Protocol):
    """Where records go (router_proxy/records: ``RecordSink``): never blocks, never raises."""

    def write(self, record: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One sampled request: what to send, and to whom (the answering model left out at
    ``start``, when it is known for certain)."""

    decision: str
    request_id: str
    body: dict[str, Any]
    models: tuple[str, ...]


@dataclass(slots=True)
class DaySpend:
    """US$ spent per decision on the current UTC day; carried across reloads."""

    day: int = -1
    spent: dict[str, float] = field(default_factory=dict)

    def today(self, now: float) -> dict[str, float]:
        day = int(now // 86400)
        if day != self.day:
            self.day, self.spent = day, {}
        return self.spent


class ShadowSampler:
    def __init__(
        self,
        policies: Mapping[str, ShadowConfig],
        candidates: Mapping[str, tuple[str, ...]],
        upstream: Upstream,
        models: Mapping[str, ModelConfig],
        metrics: Metrics,
        *,
        sink: Sink | None = None,
        spend: DaySpend | None = None,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policies = policies
        self.pools = {
            name: tuple(policy.models or candidates.get(name, ()))
            for name, policy in policies.items()
        }
        self.upstream = upstream
        self.models = models
        self.metrics = metrics
        self.sink = sink  # the records' sink (the config requires `records:` to shadow)
        self.spend = spend if spend is not None else DaySpend()
        self._draw = draw
        self._clock = clock
        self._running: dict[str, set[asyncio.Task[None]]] = {name: set() for name in policies}
        self._closed = False

    @classmethod
    def build(
        cls,
        config: Config,
        upstream: Upstream,
        metrics: Metrics,
        previous: ShadowSampler | None = None,
        sink: Sink | None = None,
    ) -> ShadowSampler | None:
        """None when no decision shadows (the engine then pays one ``is None`` check)."""
        policies = {d.name: d.shadow for d in config.decisions if d.shadow is not None}
        if not policies:
            return None
        # The pool: a cascade's or aggregate's models are named in its params.
        candidates = {
            d.name: route_candidates(d.route) for d in config.decisions if d.shadow is not None
        }
        return cls(
            policies,
            candidates,
            upstream,
            config.models,
            metrics,
            sink=sink,
            spend=previous.spend if previous is not None else None,
        )

    @property
    def in_flight(self) -> int:
        return sum(len(tasks) for tasks in self._running.values())

    def draw(self, decision: str, ctx: RequestContext, body: Outgoing) -> ShadowJob | None:
        """Whether this request is shadowed (its decision's ``share``), to which models
        (never one the caller's allowed/excluded models rule out), and with what body: the
        chat body the answering model got, never streamed. No await: it runs on the
        answering path."""
        policy = self.policies.get(decision)
        if policy is None or ctx.endpoint != "chat" or self._draw() >= policy.share:
            return None
        models = self.pools[decision]
        asked = ctx.preferences
        if asked is not None:  # a caller who rules a model out rules out its shadow too
            models = tuple(
                m
                for m in models
                if (asked.allowed is None or m in asked.allowed) and m not in asked.excluded
            )
            if not models:
                return None
        sent = {k: v for k, v in body.body.items() if k not in ("stream", "stream_options")}
        return ShadowJob(decision, ctx.request_id, sent, models)

    def start(
        self, job: ShadowJob, answered_by: str | None, called: frozenset[str] = frozenset()
    ) -> None:
        """After the client's answer has been sent: one background call per shadow model
        but the one that answered and those the request's own calls already had answer
        (``called``: a cascade's or aggregate's; their answers are in its record). Never
        raises (it runs after the response, in ``finally`` blocks)."""
        try:
            self._start(job, answered_by, called)
        except Exception:
            logger.exception("shadow sampling failed (request %s)", job.request_id)

    def _start(self, job: ShadowJob, answered_by: str | None, called: frozenset[str]) -> None:
        policy, running = self.policies[job.decision], self._running[job.decision]
        models = [m for m in job.models if m != answered_by and m not in called]
        if self._closed:  # an answer sent after its runtime closed (a reload, shutdown)
            self.metrics.shadow_dropped.labels(job.decision, "cancelled").inc(len(models))
            return
        spent = self.spend.today(self._clock())
        loop = asyncio.get_running_loop()
        for model in models:
            if spent.get(job.decision, 0.0) >= policy.budget_usd_per_day:
                self.metrics.shadow_dropped.labels(job.decision, "budget").inc()
            elif len(running) >= policy.max_concurrent:
                self.metrics.shadow_dropped.labels(job.decision, "full").inc()
            else:
                task = loop.create_task(self._call(job, model))
                running.add(task)
                task.add_done_callback(running.discard)

    async def _call(self, job: ShadowJob, model: str) -> None:
        started = time.perf_counter()
        answer, usage, status, error = None, None, 200, None
        try:
            completion = await self.upstream.complete(
                Outgoing(job.body), model, None, job.request_id
            )
            usage, answer = (
                completion.usage,
                answer_text((completion.body,), "chat", streamed=False),
            )
        except asyncio.CancelledError:
            self.metrics.shadow_dropped.labels(job.decision, "cancelled").inc()
            raise
        except GatewayError as exc:
            status, error = exc.status_code, exc.code or type(exc).__name__
        except Exception as exc:  # a provider's bug must not escape a background task
            logger.warning("shadow call to '%s' failed", model, exc_info=exc)
            status, error = 500, "internal"
        self._account(job, model, started, answer, usage, status, error)

    def _account(
        self,
        job: ShadowJob,
        model: str,
        started: float,
        answer: str | None,
        usage: Usage | None,
        status: int,
        error: str | None,
    ) -> None:
        try:
            config = self.models.get(model)
            cost = (
                config.cost.dollars(usage.prompt_tokens, usage.completion_tokens)
                if config is not None and usage is not None
                else None
            )
            if cost:
                spent = self.spend.today(self._clock())
                spent[job.decision] = spent.get(job.decision, 0.0) + cost
                self.metrics.shadow_spend.labels(job.decision).inc(cost)
            outcome = "ok" if error is None else "error"
            self.metrics.shadow_calls.labels(job.decision, model, outcome).inc()
            if self.sink is not None:
                self.sink.write(
                    {
                        "v": 1,
                        "kind": "shadow",
                        "request_id": job.request_id,
                        "time": self._clock(),
                        "decision": job.decision,
                        "model": model,
                        "answer": answer,
                        "usage": usage_fields(usage),
                        "cost_usd": cost,
                        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                        "status": status,
                        "error": error,
                    }
                )
        except Exception:
            logger.exception("recording a shadow call failed (request %s)", job.request_id)

    async def aclose(self) -> None:
        """Cancel every shadow call in flight and wait for them to end; start no more."""
        self._closed = True
        tasks = [t for running in self._running.values() for t in running]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
