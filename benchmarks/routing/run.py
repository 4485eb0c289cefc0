"""Routing time and its cost to throughput.

1. Routing time per request (signals + decision + selection, no upstream), p50 and p99,
   measured in process on distinct prompts (RouterBench's few-shot prompts plus short
   chat prompts), for:
     cheap10    10 decisions over cheap signals             target p50 < 0.2 ms
     embedding  embedding + domain signals, static encoder  target p50 < 2 ms
     embedding  the same on the sentence-transformers encoder (reported)
2. With ``--throughput``: gateway requests/s at 32 connections with the embedding policy
   against the keyword-only policy, interleaved rounds, prompts that differ on every
   request (``varied.lua``)                                  target >= 0.8x

    .venv/bin/python -m benchmarks.routing.run [--prompts 400] [--throughput]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.runtime import Runtime

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE / "results"
SHORT_PROMPTS = [
    "hello, can you help me?",
    "Write a haiku about autumn",
    "What's the capital of Australia?",
    "My python script crashes with a KeyError, why?",
    "Is it safe to take ibuprofen with coffee?",
    "How do I register a trademark in the EU?",
    "Prove that sqrt(2) is irrational",
    "Translate 'good morning' into German",
    "Should I pay off my student loan or invest?",
    "Give me three ideas for a birthday party",
]


def load_prompts(data: Path, count: int) -> list[str]:
    """Half real few-shot prompts (long), half short chat prompts; all distinct."""
    prompts: list[str] = []
    if data.exists():
        with data.open() as fh:
            for line in fh:
                prompts.append(json.loads(line)["prompt"])
                if len(prompts) >= count // 2:
                    break
    i = 0
    while len(prompts) < count:
        prompts.append(f"{SHORT_PROMPTS[i % len(SHORT_PROMPTS)]} (variant {i})")
        i += 1
    return prompts


def build(policy: Path, backend: str | None) -> Runtime:
    text = policy.read_text()
    if backend is not None:
        text += f"\nembeddings: {{backend: {backend}}}\n"
    config, _ = load_config_text(text, env={})
    return Runtime.build(config)


async def time_routing(runtime: Runtime, prompts: list[str]) -> list[float]:
    pipeline = runtime.pipeline
    for prompt in prompts[:20]:  # warm-up: loads models, fills nothing we measure later
        await pipeline.route(RequestContext.from_prompt("warm-up " + prompt))
    samples: list[float] = []
    for i, prompt in enumerate(prompts):
        ctx = RequestContext.from_prompt(prompt)
        began = time.perf_counter()
        await pipeline.route(ctx)
        samples.append((time.perf_counter() - began) * 1000)
        if (i + 1) % 100 == 0:
            print(f"    {i + 1}/{len(prompts)} prompts", file=sys.stderr)
    return samples


def quantile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q * 100) - 1]


def routing_times(args: argparse.Namespace) -> dict[str, Any]:
    cases = [
        ("cheap10", HERE / "policies" / "cheap10.yaml", None, args.prompts, 0.2),
        ("embedding/static", HERE / "policies" / "embedding.yaml", "static", args.prompts, 2.0),
        (
            "embedding/sentence-transformers",
            HERE / "policies" / "embedding.yaml",
            "sentence-transformers",
            args.transformer_prompts,
            None,
        ),
    ]
    out: dict[str, Any] = {}
    for name, policy, backend, count, target in cases:
        print(f"[routing] {name}: {count} prompts", file=sys.stderr)
        try:
            runtime = build(policy, backend)
        except ImportError as exc:  # the transformer extra is optional
            print(f"    skipped: {exc}", file=sys.stderr)
            continue
        samples = asyncio.run(time_routing(runtime, load_prompts(args.data, count)))
        p50, p99 = statistics.median(samples), quantile(samples, 0.99)
        verdict = "-" if target is None else ("PASS" if p50 < target else "FAIL")
        out[name] = {"prompts": count, "p50_ms": p50, "p99_ms": p99, "target_p50_ms": target}
        print(f"{name:<34} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   {verdict}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--transformer-prompts", type=int, default=100)
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "routerbench" / "dev.jsonl"
    )
    parser.add_argument("--throughput", action="store_true", help="also run the wrk comparison")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=int, default=2)
    args = parser.parse_args()
    report: dict[str, Any] = {"routing": routing_times(args)}
    if args.throughput:
        from benchmarks.routing.throughput import compare_policies

        report["throughput"] = compare_policies(args.rounds, args.duration)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "routing.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {RESULTS / 'routing.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
