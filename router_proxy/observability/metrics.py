"""Prometheus metrics. One registry per app (not the global one), so several apps in one
process (tests, reloads) never collide. Label values come from the config (decision and
model names) or a fixed set, never from client input, so cardinality stays bounded.

With several worker processes (``serve --workers N``) the parent sets
``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder before the workers start; prometheus_client
then keeps every value in per-process mmap files there, whichever registry a metric is in,
and ``/metrics`` serves the sum over workers (``MultiProcessCollector``). Each gauge says
how workers combine (``multiprocess_mode``; a gauge without one is reported per pid).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from router_proxy.protocol import Usage

UNKNOWN = "-"
RELOAD_TRIGGERS = ("file", "admin", "sighup")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch
# prometheus_client.multiprocess has no annotations; these are its signatures.
_collect_workers: Callable[[CollectorRegistry, str], object] = multiprocess.MultiProcessCollector
mark_process_dead: Callable[[int, str], None] = multiprocess.mark_process_dead

ROUTING_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
CALL_COUNT_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 12, 16)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class CallLike(Protocol):
    """One call of a multi-call request (engine/multi_call/calls.py), as counted here."""

    @property
    def model(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def usage(self) -> Usage | None: ...
    @property
    def cost(self) -> float | None: ...
    @property
    def called(self) -> bool: ...


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "router_requests",
            "Chat requests by decision, model and HTTP status",
            ["decision", "model", "status"],
            registry=r,
        )
        self.routing_seconds = Histogram(
            "router_routing_seconds",
            "Time to route (signals, decision, selection)",
            buckets=ROUTING_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "router_upstream_seconds",
            "Upstream call time (to the last byte for streams)",
            ["model"],
            buckets=UPSTREAM_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "router_tokens", "Tokens reported by upstreams", ["model", "kind"], registry=r
        )
        self.cost = Counter(
            "router_cost_dollars",
            "Estimated spend in US$ from the cost table",
            ["model"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "router_upstream_errors",
            "Failed upstream calls by model and error code",
            ["model", "code"],
            registry=r,
        )
        self.in_flight = Gauge(
            "router_requests_in_flight",
            "Chat requests being served",
            registry=r,
            multiprocess_mode="livesum",
        )
        self._add_policy_metrics(r)
        self._add_resilience_metrics(r)
        self._add_cache_metrics(r)
        self._add_records_metrics(r)
        self._add_shadow_metrics(r)
        self._add_multi_call_metrics(r)
        # Label sets come from the config and a few statuses: bounded.
        self._children: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self._attempt_children: dict[tuple[str, str], Any] = {}

    def _add_policy_metrics(self, r: CollectorRegistry) -> None:
        self.config_reloads = Counter(
            "router_config_reloads",
            "Policy reloads by trigger and result",
            ["trigger", "result"],
            registry=r,
        )
        # Every series exists from the start at 0, so `increase(...[15m]) > 0` also
        # catches a replica's first refused policy.
        for trigger in RELOAD_TRIGGERS:
            for result in ("success", "failure"):
                self.config_reloads.labels(trigger, result)
        self.config_generation = Gauge(
            "router_config_generation",
            "Generation of the policy now serving (0 = first; each worker counts its own)",
            registry=r,
            multiprocess_mode="livemax",
        )

    def _add_resilience_metrics(self, r: CollectorRegistry) -> None:
        self.breaker_state = Gauge(
            "router_breaker_state",
            "Circuit breaker per model: 0 closed, 1 half-open, 2 open",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",  # open in any worker shows as open
        )
        self.rate_limited = Counter(
            "router_rate_limited",
            "Requests refused by the gateway's own limits",
            ["scope", "limit"],
            registry=r,
        )
        self.upstream_attempts = Counter(
            "router_upstream_attempts",
            "Upstream attempts by model and outcome (success, retry, failure)",
            ["model", "outcome"],
            registry=r,
        )
        self.fallbacks = Counter(
            "router_fallbacks",
            "Requests answered by a model other than the selector's first choice",
            ["decision"],
            registry=r,
        )
        self.affinity = Counter(
            "router_affinity",
            "Turns of conversations with a session: the bound model kept (hit), none bound "
            "yet (miss), or another bound instead (rebound)",
            ["decision", "result"],
            registry=r,
        )
        self.rebound = Counter(
            "router_affinity_rebound",
            "Sessions bound to another model, by why the bound one was not kept",
            ["decision", "reason"],
            registry=r,
        )
        self.shared_state_up = Gauge(
            "router_shared_state_up",
            "1 while the shared state (Redis) answers; 0 while serving on local state",
            registry=r,
            multiprocess_mode="livemin",  # any worker cut off shows as 0
        )

    def _add_cache_metrics(self, r: CollectorRegistry) -> None:
        def outcome(name: str, meaning: str) -> Counter:
            return Counter(
                f"router_cache_{name}",
                f"Requests of caching decisions {meaning}",
                ["decision"],
                registry=r,
            )

        self.cache_hits = outcome("hits", "answered from the response cache")
        self.cache_coalesced = outcome(
            "coalesced", "answered with an identical request's answer, waited for in flight"
        )
        self.cache_misses = outcome("misses", "answered by a model (stored when complete)")
        self.cache_bypass = outcome(
            "bypass", "served without the cache (asked, not cacheable, store down)"
        )
        self._cache_outcomes = {
            "hit": self.cache_hits,
            "coalesced": self.cache_coalesced,
            "miss": self.cache_misses,
            "bypass": self.cache_bypass,
        }
        self.cache_bytes = Gauge(
            "router_cache_bytes",
            "Bytes of answers in the memory cache store (Redis reports its own)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cache_saved = Counter(
            "router_cache_saved_dollars",
            "US$ not spent: cache hits priced at the stored answer's model and usage",
            ["decision"],
            registry=r,
        )

    def _add_records_metrics(self, r: CollectorRegistry) -> None:
        self.records_written = Counter(
            "router_records_written",
            "Decision records written by the sink (served and shadow)",
            ["sink"],
            registry=r,
        )
        self.records_dropped = Counter(
            "router_records_dropped",
            "Decision records dropped: overflow (the writer was behind), error (the write "
            "failed), closed (written after the sink closed)",
            ["sink", "reason"],
            registry=r,
        )

    def count_records_written(self, sink: str, count: int) -> None:
        self.records_written.labels(sink).inc(count)

    def count_records_dropped(self, sink: str, reason: str, count: int) -> None:
        self.records_dropped.labels(sink, reason).inc(count)

    def _add_shadow_metrics(self, r: CollectorRegistry) -> None:
        self.shadow_calls = Counter(
            "router_shadow_calls",
            "Shadow calls (engine/shadow.py) by decision, model and outcome (ok | error)",
            ["decision", "model", "outcome"],
            registry=r,
        )
        self.shadow_spend = Counter(
            "router_shadow_spend_dollars",
            "US$ spent on shadow calls, at the models' prices",
            ["decision"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "router_shadow_dropped",
            "Shadow calls not made: full (max_concurrent in flight), budget (the day's "
            "spent), cancelled (shutdown or reload)",
            ["decision", "reason"],
            registry=r,
        )

    def _add_multi_call_metrics(self, r: CollectorRegistry) -> None:
        self.multi_call_calls = Histogram(
            "router_multicall_calls",
            "Model calls per request of cascade and aggregate decisions (verifiers included)",
            ["decision"],
            buckets=CALL_COUNT_BUCKETS,
            registry=r,
        )
        self.multi_call_stage = Counter(
            "router_multicall_stage_reached",
            "Requests of cascade and aggregate decisions by the last stage they reached "
            "(1 = the first)",
            ["decision", "stage"],
            registry=r,
        )
        self.multi_call_stage_seconds = Histogram(
            "router_multicall_stage_seconds",
            "Time of one stage (its calls in parallel; a streamed last stage: to its "
            "first event): the latency a cascade adds per stage",
            ["decision", "stage"],
            buckets=UPSTREAM_BUCKETS,
            registry=r,
        )
        self.multi_call_outcomes = Counter(
            "router_multicall_call_outcomes",
            "Calls of cascade and aggregate decisions by model and what became of their "
            "answer (answered, agree-fail, low-confidence, verified-no, outvoted, failed, ...)",
            ["decision", "model", "outcome"],
            registry=r,
        )
        self.multi_call_budget = Gauge(
            "router_multicall_effective_budget_per_1k",
            "The budget_per_1k a trained cascade's live budget hold (hold_budget) asks its "
            "artifact with now: the configured budget x the hold's correction (each "
            "replica and worker holds its own)",
            ["decision"],
            registry=r,
            multiprocess_mode="liveall",
        )

    def count_calls(
        self, decision: str, calls: Sequence[CallLike], stage_seconds: Sequence[float]
    ) -> None:
        """One multi-call request's calls: each one's tokens and dollars under its own
        model, what became of it, and each stage's time."""
        self.multi_call_calls.labels(decision).observe(sum(1 for c in calls if c.called))
        self.multi_call_stage.labels(decision, str(len(stage_seconds))).inc()
        for i, seconds in enumerate(stage_seconds, start=1):
            self.multi_call_stage_seconds.labels(decision, str(i)).observe(seconds)
        for call in calls:
            self.multi_call_outcomes.labels(decision, call.model, call.reason).inc()
            if call.usage is not None:
                self.tokens.labels(call.model, "prompt").inc(max(call.usage.prompt_tokens, 0))
                self.tokens.labels(call.model, "completion").inc(
                    max(call.usage.completion_tokens, 0)
                )
            if call.cost is not None and call.cost > 0:
                self.cost.labels(call.model).inc(call.cost)

    def count_cache(self, decision: str, outcome: str, saved: float | None) -> None:
        self._cache_outcomes[outcome].labels(decision).inc()
        if saved:
            self.cache_saved.labels(decision).inc(saved)

    def count_attempt(self, model: str, outcome: str) -> None:
        child = self._attempt_children.get((model, outcome))
        if child is None:  # a label lookup takes a lock and checks names: once per pair
            child = self._attempt_children[(model, outcome)] = self.upstream_attempts.labels(
                model, outcome
            )
        child.inc()

    def count_rate_limited(self, scope: str, limit: str) -> None:
        self.rate_limited.labels(scope, limit).inc()

    def count_upstream_error(self, model: str, code: str) -> None:
        self.upstream_errors.labels(model, code).inc()

    def show_breakers(self, states: Mapping[str, int]) -> None:
        for model, state in states.items():
            self.breaker_state.labels(model).set(state)

    def record(
        self,
        decision: str,
        model: str,
        status: int,
        upstream_seconds: float | None,
        usage: Usage | None,
        cost: float | None,
    ) -> None:
        """Account for one finished request (the only call on the hot path)."""
        children = self._children.get((decision, model, status))
        if children is None:
            children = self._children[(decision, model, status)] = self._make_children(
                decision, model, status
            )
        requests, upstream, prompt, completion, dollars = children
        requests.inc()
        if model == UNKNOWN:
            return
        if upstream_seconds is not None:
            upstream.observe(upstream_seconds)
        if usage is not None:  # counters refuse negative steps: never let one through
            prompt.inc(max(usage.prompt_tokens, 0))
            completion.inc(max(usage.completion_tokens, 0))
        if cost is not None and cost > 0:
            dollars.inc(cost)

    def _make_children(self, decision: str, model: str, status: int) -> tuple[Any, ...]:
        # Label lookups take a lock and validate names; resolve them once per label set.
        return (
            self.requests.labels(decision, model, str(status)),
            self.upstream_seconds.labels(model),
            self.tokens.labels(model, "prompt"),
            self.tokens.labels(model, "completion"),
            self.cost.labels(model),
        )

    def exposition(self) -> bytes:
        """The text ``/metrics`` serves: this registry, or every worker's values summed."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        _collect_workers(registry, directory)
        return generate_latest(registry)


def multiprocess_dir() -> str | None:
    """Where worker processes keep their values; None when this is the only process."""
    return os.environ.get(MULTIPROC_ENV) or None


_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def forget_dead_workers() -> None:
    """Drop the live gauges (in flight, generation) of workers that are gone: one that
    exited cleanly did it itself (``worker_exiting``); a killed one is reaped by the
    worker that replaces it. Counters and histograms of dead workers keep counting."""
    directory = multiprocess_dir()
    if directory is None:
        return
    for path in Path(directory).iterdir():
        match = _LIVE_GAUGE_FILE.match(path.name)
        if match and not _alive(int(match[1])):
            mark_process_dead(int(match[1]), directory)


def worker_exiting() -> None:
    if (directory := multiprocess_dir()) is not None:
        mark_process_dead(os.getpid(), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but another user's
        return True
    return True
