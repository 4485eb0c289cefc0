"""The routing step with no HTTP in it: RequestContext -> signals -> decision -> selection.

``Pipeline.route`` is what the server, ``router-proxy explain``, ``POST /v1/route`` and
the benchmarks call; it is built once per config and shared by all requests.

No request may hold the event loop every client shares: a CPU-heavy signal on long text
(``CpuSignal``, over ``routing.offload_chars``) runs in the CPU pool, and it and the
model-backed signals get what is left of ``routing.budget_ms``; one that has not answered
by then counts as not fired ("unknown"), named in ``RoutePlan.timed_out``. Cheap signals
run inline, as before: a thread hop would cost more than they do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from router_proxy.config.errors import ConfigError, ConfigIssue
from router_proxy.config.references import AUTO, DIRECT
from router_proxy.config.schema import Config, RouteConfig
from router_proxy.context import RequestContext
from router_proxy.decisions.rules import Resolve, Rule, RuleParser, explain, holds, render
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.errors import NotFoundError
from router_proxy.plugins.base import Plugin
from router_proxy.plugins.registry import build_plugin
from router_proxy.resources import BuildContext, CpuPool, Resources
from router_proxy.selection.artifact import ArtifactError
from router_proxy.selection.base import Selector
from router_proxy.selection.multi_call import MultiCallPlan, MultiCallSelector, describe_plan
from router_proxy.selection.registry import SELECTORS
from router_proxy.signals.base import CpuSignal, Signal, SignalResult
from router_proxy.signals.registry import SIGNAL_TYPES

Via = Literal["auto", "decision", "model"]
# A traced request's routing steps: (kind "signal" | "select", name, start ns, end ns).
Timing = tuple[str, str, int, int]
# Signals at or above this cost call a model (embedding, domain): they get the budget too.
MODEL_COST_RANK = 100


@dataclass(frozen=True)
class CompiledDecision:
    name: str
    priority: int
    rule: Rule
    selector: Selector[Any]
    plugins: tuple[Plugin, ...] = ()
    # Set for a decision that calls several models (cascade, aggregate): it plans calls.
    planner: MultiCallSelector | None = None


@dataclass(frozen=True)
class RoutePlan:
    decision: str
    model: str  # the chosen model: the first of ``candidates``
    candidates: tuple[str, ...]  # best first; the rest are the fallback order
    via: Via  # how the request's `model` was resolved
    rule: str  # the matched decision's rule, rendered
    signals: dict[str, SignalResult] = field(default_factory=dict)  # only those evaluated
    routing_seconds: float = 0.0
    plugins: tuple[Plugin, ...] = ()  # the decision's, applied to the body after selection
    # Decisions tried before the match (all failed), then the match: explained on demand,
    # never on the hot path.
    tried: tuple[CompiledDecision, ...] = ()
    timed_out: tuple[str, ...] = ()  # signals that had not answered within the budget
    # What the caller asked of routing and what it did (engine/preferences.py).
    preferences: dict[str, Any] | None = None
    # Several calls for one answer (cascade, aggregate: engine/multi_call/); None: one.
    calls: MultiCallPlan | None = None

    @property
    def explanation(self) -> str:
        """The matched rule with the value of each signal behind it."""
        return explain(self.tried[-1].rule, self.signals) if self.tried else self.rule

    def rejected(self) -> dict[str, str]:
        """Each decision tried before the match, with why it did not hold."""
        return {d.name: explain(d.rule, self.signals) for d in self.tried[:-1]}

    def to_dict(self) -> dict[str, Any]:
        shown = {"preferences": self.preferences} if self.preferences is not None else {}
        if self.calls is not None:
            shown["calls"] = describe_plan(self.calls)
        return {
            "decision": self.decision,
            "model": self.model,
            "candidates": list(self.candidates),
            "via": self.via,
            "rule": self.rule,
            "explanation": self.explanation,
            "rejected": self.rejected(),
            "signals": {name: result.to_dict() for name, result in self.signals.items()},
            "routing_ms": round(self.routing_seconds * 1000, 4),
            "timed_out": list(self.timed_out),
            "plugins": [plugin.describe() for plugin in self.plugins],
        } | shown

    def outgoing_body(self, ctx: RequestContext) -> dict[str, Any]:
        """The client's body after the decision's plugins."""
        body = ctx.raw_body
        for plugin in self.plugins:
            body = plugin.apply(body, ctx)
        return body


class Pipeline:
    def __init__(
        self,
        config: Config,
        signals: Mapping[str, Signal[Any]],
        decisions: list[CompiledDecision],
        cpu: CpuPool | None = None,
    ) -> None:
        self.config = config
        self.signals = signals
        self.decisions = decisions  # in evaluation order
        self._by_name = {d.name: d for d in decisions}
        self.cpu = cpu or CpuPool()
        self.budget = config.routing.budget_ms / 1000
        self.offload_chars = config.routing.offload_chars
        # The signals that get the budget (and the pool, on long text); the rest run inline.
        self._guarded = {
            name
            for name, signal in signals.items()
            if isinstance(signal, CpuSignal) or signal.cost_rank >= MODEL_COST_RANK
        }

    @classmethod
    def build(
        cls, config: Config, resources: Resources | None = None, previous: Pipeline | None = None
    ) -> Pipeline:
        """Compile a config already checked by ``load_config`` (slow when it embeds
        examples: run it off the event loop). ``previous``: the pipeline a hot reload
        replaces; a decision of the same name keeps what its selector learned live
        (``Selector.carry_from``)."""
        resources = resources or Resources(
            SharedEncoder(config.embeddings), cpu=CpuPool(config.server.cpu_workers)
        )
        build = BuildContext(resources, config.models)
        signals = {s.name: SIGNAL_TYPES[s.type].build(s, build) for s in config.signals}
        parser = RuleParser(
            {s.name: s for s in config.signals},
            {name: signal.cost_rank for name, signal in signals.items()},
        )
        compiled: list[tuple[int, int, CompiledDecision]] = []
        for index, d in enumerate(config.decisions):
            selector = _build_selector(config, index, build)
            rule = parser.parse(d.when, ("decisions", index, "when"))
            plugins = tuple(build_plugin(item, build) for item in d.plugins)
            planner = selector if isinstance(selector, MultiCallSelector) else None
            before = previous._by_name.get(d.name) if previous is not None else None
            if before is not None:
                selector.carry_from(before.selector)
            decision = CompiledDecision(d.name, d.priority, rule, selector, plugins, planner)
            compiled.append((-d.priority, index, decision))
        if parser.errors:  # load_config refuses these; reaching here is a caller's bug
            raise ValueError(f"unchecked config: {parser.errors}")
        compiled.sort(key=lambda item: (item[0], item[1]))
        return cls(config, signals, [c for _, _, c in compiled], resources.cpu)

    async def route(self, ctx: RequestContext, timings: list[Timing] | None = None) -> RoutePlan:
        """``timings``: a traced request's list, given each signal's and the selector's
        (kind, name, start, end) in ``time.time_ns()``; None (untraced) times nothing."""
        started = time.perf_counter()
        requested = ctx.request.model
        results: dict[str, SignalResult] = {}
        timed_out: list[str] = []

        async def resolve(name: str) -> SignalResult:
            found = results.get(name)
            if found is None:
                if name in self._guarded:
                    found = await self._within_budget(name, ctx, started, timed_out)
                else:
                    found = await self.signals[name].evaluate(ctx)
                results[name] = found
            return found

        resolver: Resolve = resolve if timings is None else _timed(resolve, results, timings)

        via: Via
        if requested == AUTO:
            via = "auto"
            tried = await self._first_match(resolver)
            decision = tried[-1]
        elif requested in self._by_name:
            via, decision = "decision", self._by_name[requested]
            tried = (decision,)
        elif requested in self.config.models:
            return RoutePlan(
                DIRECT,
                requested,
                (requested,),
                "model",
                "model named by the request",
                routing_seconds=time.perf_counter() - started,
            )
        else:
            raise NotFoundError(
                f"The model '{requested}' does not exist: use 'auto', a decision or a "
                "configured model (GET /v1/models lists them)",
                param="model",
                code="model_not_found",
            )
        if decision.planner is not None:
            calls = await decision.planner.plan(ctx)
            order = calls.models
        elif timings is None:
            order, calls = await decision.selector.order(ctx), None
        else:
            order, calls = await _timed_order(decision, ctx, timings), None
        return RoutePlan(
            decision.name,
            order[0],
            order,
            via,
            render(decision.rule),
            results,
            time.perf_counter() - started,
            decision.plugins,
            tried,
            tuple(timed_out),
            calls=calls,
        )

    async def _within_budget(
        self, name: str, ctx: RequestContext, started: float, timed_out: list[str]
    ) -> SignalResult:
        """A heavy signal's value, or "unknown" once the routing budget has run out."""
        signal = self.signals[name]
        work: asyncio.Future[SignalResult]
        if isinstance(signal, CpuSignal):
            if signal.text_chars(ctx) <= self.offload_chars:
                return signal.compute(ctx)  # short text: cheaper than a thread hop
            work = self.cpu.run(signal.compute, ctx)
        else:
            work = asyncio.ensure_future(signal.evaluate(ctx))
        left = started + self.budget - time.perf_counter()
        try:
            # Cancelled at the deadline; pool work not yet started is dropped with it.
            return await asyncio.wait_for(work, max(left, 0.0))
        except TimeoutError:
            timed_out.append(name)
            budget = f"{self.budget * 1000:g} ms"
            return SignalResult(False, None, f"unknown: no answer within the budget ({budget})")

    async def outgoing_body(self, plan: RoutePlan, ctx: RequestContext) -> dict[str, Any]:
        """``plan.outgoing_body``: in the CPU pool when a plugin's work grows with the text
        (redaction) and the text is long."""
        if any(p.cpu_bound for p in plan.plugins) and len(ctx.text("all")) > self.offload_chars:
            return await self.cpu.run(plan.outgoing_body, ctx)
        return plan.outgoing_body(ctx)

    async def _first_match(self, resolve: Resolve) -> tuple[CompiledDecision, ...]:
        """The decisions tried, in order; the last one held."""
        for i, decision in enumerate(self.decisions):
            if await holds(decision.rule, resolve):
                return tuple(self.decisions[: i + 1])
        # Unreachable: load_config requires a `when: true` default.
        return tuple(self.decisions)


def _timed(resolve: Resolve, results: dict[str, SignalResult], timings: list[Timing]) -> Resolve:
    """``resolve`` noting each signal's evaluation time (not a value already known)."""

    async def timed(name: str) -> SignalResult:
        found = results.get(name)
        if found is not None:
            return found
        start = time.time_ns()
        found = await resolve(name)
        timings.append(("signal", name, start, time.time_ns()))
        return found

    return timed


async def _timed_order(
    decision: CompiledDecision, ctx: RequestContext, timings: list[Timing]
) -> tuple[str, ...]:
    start = time.time_ns()
    order = await decision.selector.order(ctx)
    timings.append(("select", type(decision.selector).__name__, start, time.time_ns()))
    return order


def route_candidates(route: RouteConfig, params: Any = None) -> tuple[str, ...]:
    """A decision's models: its ``candidates``, or every model a cascade's or aggregate's
    params name (those have no ``candidates``). ``params``: the route's, when already
    validated."""
    selector_cls = SELECTORS[route.algorithm]
    if not issubclass(selector_cls, MultiCallSelector):
        return tuple(route.candidates)
    if params is None:
        params = selector_cls.config_model.model_validate(route.params)
    return selector_cls.candidates_of(params)


def _build_selector(config: Config, index: int, build: BuildContext) -> Selector[Any]:
    route = config.decisions[index].route
    selector_cls = SELECTORS[route.algorithm]
    params = selector_cls.config_model.model_validate(route.params)
    candidates = route_candidates(route, params)
    try:
        return selector_cls.build(candidates, params, build)
    except ArtifactError as exc:  # e.g. the artifact changed on disk since the check
        path = ("decisions", index, "route", "params", "artifact")
        raise ConfigError([ConfigIssue(path, str(exc))]) from exc
