"""Replays the multi-turn trace (trace.py) through each example policy, in process, with
session affinity off and on, and reports:

1. the share of turns that stay on their conversation's model (the one that answered its
   previous turn: ``stay``; also the one of its first turn, and whole conversations on
   one model), and why bindings moved;
2. what affinity and the context-window check cost on the routing path, p50 and p99:
   the session lookup and binding (memory, and Redis with ``--redis``) and the token
   count (every model declares a realistic window here, so every request is checked).

The policies are configs/*.yaml with every provider swapped for the mock (no network),
each model given the context window it has in practice; once steady, and once with a
simulated outage: the first candidate of one decision is unhealthy (breaker open) for
turns 4-6 of every conversation, as in a provider incident. Conversations advance in rounds (turn 1
of all, then turn 2 of all, ...) and each keeps its history (the answers the mock gave).

    python -m benchmarks.conversations.run [--conversations 240] [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import yaml

from benchmarks.conversations.trace import TOOLS, Conversation, build
from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.engine.record import RequestRecord
from router_proxy.errors import GatewayError
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.runtime import Runtime

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE / "results"
POLICIES = ("default", "coding", "cost", "long-context", "multilingual", "privacy")
# Each decision's first candidate that goes down for a while, per policy.
OUTAGE = {
    "default": "small",
    "coding": "qwen-coder",
    "cost": "claude-sonnet",
    "long-context": "llama-8b",
    "multilingual": "mistral-small",
    "privacy": "gpt-4o-mini",
}
OUTAGE_TURNS = range(3, 6)  # 0-based: the 4th to 6th turn of each conversation
# Context windows as deployed (a self-hosted 8B with vLLM's --max-model-len 8192).
WINDOWS = {
    "small": 8192,
    "coder": 32768,
    "large": 200000,
    "qwen-coder": 32768,
    "gpt-4o": 128000,
    "gpt-4o-mini": 128000,
    "claude-sonnet": 200000,
    "llama-8b": 8192,
    "qwen-long": 1010000,
    "mistral-small": 32768,
    "qwen-72b": 32768,
    "qwen-local": 32768,
}
MODES = ("off", "decision", "sticky")
SCENARIOS = ("steady", "outage")  # outage: OUTAGE's model is down for OUTAGE_TURNS
ENV = {"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x"}


def policy_config(name: str, mode: str, redis_url: str | None) -> Any:
    data = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    data["providers"] = {provider: {"type": "mock"} for provider in data["providers"]}
    for model, spec in data["models"].items():
        spec["context_window"] = WINDOWS[model]
    for decision in data["decisions"]:
        decision["affinity"] = "sticky" if mode == "sticky" else "decision"
    data["affinity"] = {"enabled": mode != "off"}
    data["server"] = {"log_requests": False}
    data["resilience"] = {"breaker": {"cooldown": 3600}}
    if redis_url is not None:
        data["state"] = {"backend": "redis", "url": redis_url, "key_prefix": f"bench-{mode}"}
    config, _ = load_config_text(yaml.safe_dump(data, allow_unicode=True), env=ENV)
    return config


class Timings:
    """Samples (ms) of the steps on the routing path, by name."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.samples.setdefault(name, []).append((time.perf_counter() - began) * 1000)

    def wrap_sync(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.measure(name):
                return fn(*args, **kwargs)

        return timed

    def wrap_async(self, name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            with self.measure(name):
                return await fn(*args, **kwargs)

        return timed

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: percentiles(values) for name, values in self.samples.items()}


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 4),
        "p99_ms": round(cuts[98] if len(cuts) > 1 else cuts[0], 4),
    }


def instrument(runtime: Runtime, timings: Timings) -> None:
    conversations = runtime.engine.conversations
    conversations.prepare = timings.wrap_async("prepare", conversations.prepare)  # type: ignore[method-assign]
    context = conversations.context
    context.check = timings.wrap_sync("context_check", context.check)  # type: ignore[method-assign]
    affinity = conversations.affinity
    if affinity is not None:
        affinity.begin = timings.wrap_async("affinity_lookup", affinity.begin)  # type: ignore[method-assign]
        affinity.settle = timings.wrap_sync("affinity_bind", affinity.settle)  # type: ignore[method-assign]


async def replay(
    runtime: Runtime, trace: list[Conversation], outage: str | None, timings: Timings
) -> dict[str, Any]:
    engine, board = runtime.engine, runtime.resources.breakers
    histories = {c.id: [{"role": "system", "content": c.system}] for c in trace}
    answered: dict[str, list[str]] = {c.id: [] for c in trace}
    reasons: Counter[str] = Counter()
    switches, failed = 0, 0
    for turn in range(max(len(c.turns) for c in trace)):
        if outage is not None and turn == OUTAGE_TURNS.start:
            for _ in range(runtime.config.resilience.breaker.failures):
                board.record_failure(outage)
        if outage is not None and turn == OUTAGE_TURNS.stop:
            board.record_success(outage)
        for conv in trace:
            if turn >= len(conv.turns):
                continue
            history = histories[conv.id]
            history.append({"role": "user", "content": conv.turns[turn]})
            body: dict[str, Any] = {"model": "auto", "messages": list(history)}
            if conv.tools:
                body["tools"] = TOOLS
            record = RequestRecord(f"{conv.id}-{turn}", "chat", "POST", "/v1/chat/completions")
            ctx = RequestContext(
                ChatCompletionRequest.model_validate(body), body, record.request_id
            )
            try:
                await engine.admit(record, None)
                plan = await engine.route(ctx, record)
                completion = await engine.complete(ctx, record)
            except GatewayError:
                failed += 1
                continue
            timings.samples.setdefault("routing", []).append(plan.routing_seconds * 1000)
            message = orjson.loads(completion.body)["choices"][0]["message"]
            history.append({"role": "assistant", "content": message.get("content") or ""})
            answered[conv.id].append(record.model or "")
            note = record.turn
            if note is not None and note.reason is not None:
                reasons[note.reason] += 1
            switches += note is not None and note.switch is not None
    return {
        **stay_shares(answered),
        "rebound": dict(reasons),
        "switches": switches,
        "failed": failed,
    }


def stay_shares(answered: dict[str, list[str]]) -> dict[str, Any]:
    later = [
        (models[0], models[i - 1], models[i])
        for models in answered.values()
        for i in range(1, len(models))
    ]
    return {
        "turns_after_the_first": len(later),
        "on_first_model": round(sum(m == first for first, _, m in later) / len(later), 4),
        "on_previous_model": round(sum(m == prev for _, prev, m in later) / len(later), 4),
        "conversations_on_one_model": round(
            sum(len(set(models)) == 1 for models in answered.values()) / len(answered), 4
        ),
    }


async def run_case(config: Any, trace: list[Conversation], outage: str | None) -> dict[str, Any]:
    runtime = Runtime.build(config)
    await runtime.start()
    try:
        timings = Timings()
        instrument(runtime, timings)
        result = await replay(runtime, trace, outage, timings)
        return result | {"timings": timings.summary()}
    finally:
        await runtime.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=240)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--policies", nargs="*", default=list(POLICIES))
    parser.add_argument("--redis", action="store_true", help="also time affinity on Redis")
    args = parser.parse_args()
    trace = build(args.conversations, args.seed)
    turns = sum(len(c.turns) for c in trace)
    print(f"trace: {len(trace)} conversations, {turns} turns", file=sys.stderr)
    redis = None
    if args.redis:
        from tests.support.redis_server import RedisServer

        redis = RedisServer()
        redis.start()
    report: dict[str, Any] = {"conversations": len(trace), "turns": turns, "policies": {}}
    try:
        for name in args.policies:
            cases: dict[str, Any] = {}
            variants = [(scenario, mode, None) for scenario in SCENARIOS for mode in MODES]
            if redis is not None:
                variants.append(("steady", "decision", redis.url))
            for scenario, mode, url in variants:
                label = f"{scenario}/{mode}" + ("+redis" if url else "")
                outage = OUTAGE[name] if scenario == "outage" else None
                config = policy_config(name, mode, url)
                cases[label] = asyncio.run(run_case(config, trace, outage))
                print_case(name, label, cases[label])
            report["policies"][name] = cases
    finally:
        if redis is not None:
            redis.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "conversations.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {RESULTS / 'conversations.json'}", file=sys.stderr)
    return 0


def print_case(policy: str, label: str, case: dict[str, Any]) -> None:
    t = case["timings"]

    def ms(step: str) -> str:
        if step not in t:
            return "       -"
        return f"{t[step]['p50_ms']:.3f}/{t[step]['p99_ms']:.3f}"

    print(
        f"{policy:<13} {label:<22} stay {case['on_previous_model']:6.1%}  "
        f"first {case['on_first_model']:6.1%}  one-model {case['conversations_on_one_model']:6.1%}"
        f"  routing {ms('routing')}  count {ms('context_check')}  "
        f"lookup {ms('affinity_lookup')}  bind {ms('affinity_bind')} ms (p50/p99)",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
