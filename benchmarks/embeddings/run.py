"""Embedding cost per prompt: the static encoder against sentence-transformers (MiniLM).

For each backend and each prompt kind (short questions, long few-shot prompts) it times:

* ``batched``     one ``encode`` call for the whole set, divided by the number of prompts
                  (load-time work: examples, training data);
* ``single``      one ``embed`` after another, the hot path with no concurrency;
* ``concurrent``  ``--concurrency`` ``embed`` calls at once through the hot path (for the
                  transformer that is the micro-batcher; the static encoder runs inline).

The cache is off (every prompt is new) and every figure is the median of ``--rounds``.
Prompts are generated from a fixed seed, so runs are comparable. Results go to
``results/embeddings.json``.

    .venv/bin/python -m benchmarks.embeddings.run [--prompts 64] [--rounds 3]
        [--backends static,sentence-transformers] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder

RESULTS = Path(__file__).resolve().parent / "results"
SUBJECTS = ["algebra", "contract law", "python", "cooking", "astronomy", "history", "biology"]
_SOURCE = (
    "which of the following best describes the reason why a model would choose this answer "
    "given that the value increases when pressure drops and the court held that the contract "
    "was void because the function returns none unless the loop terminates early"
)
WORDS = _SOURCE.split()


def short_prompts(n: int, rng: random.Random) -> list[str]:
    return [f"Question {i}: {' '.join(rng.choices(WORDS, k=12))}?" for i in range(n)]


def few_shot_prompts(n: int, rng: random.Random) -> list[str]:
    """MMLU-style 5-shot prompts, ~2,500 characters (~450 tokens) each."""
    prompts = []
    for i in range(n):
        subject = rng.choice(SUBJECTS)
        shots = [
            f"Question: {' '.join(rng.choices(WORDS, k=45))}?\n"
            + "\n".join(f"{c}. {' '.join(rng.choices(WORDS, k=4))}" for c in "ABCD")
            + f"\nAnswer: {rng.choice('ABCD')}"
            for _ in range(5)
        ]
        head = f"The following are multiple choice questions about {subject}.\n\n"
        tail = f"\n\nQuestion {i}: {' '.join(rng.choices(WORDS, k=40))}?\nAnswer:"
        prompts.append(head + "\n\n".join(shots) + tail)
    return prompts


def median_seconds(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(enc: Encoder, prompts: list[str], rounds: int, concurrency: int) -> dict[str, float]:
    enc.encode(prompts[:4])  # warm up (allocations, first-call overheads)

    async def one_by_one() -> None:
        for p in prompts:
            await enc.embed(p)

    async def concurrent() -> None:
        for start in range(0, len(prompts), concurrency):
            await asyncio.gather(*(enc.embed(p) for p in prompts[start : start + concurrency]))

    n = len(prompts)
    return {
        "batched_ms": median_seconds(lambda: enc.encode(prompts), rounds) / n * 1000,
        "single_ms": median_seconds(lambda: asyncio.run(one_by_one()), rounds) / n * 1000,
        "concurrent_ms": median_seconds(lambda: asyncio.run(concurrent()), rounds) / n * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backends", default="static,sentence-transformers")
    args = parser.parse_args()
    rng = random.Random(0)
    sets = {
        "short": short_prompts(args.prompts, rng),
        "few-shot": few_shot_prompts(args.prompts, rng),
    }
    rows = []
    for backend in args.backends.split(","):
        print(f"loading {backend} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        enc = build_encoder(EmbeddingsConfig(backend=backend, cache_size=0))  # type: ignore[arg-type]
        load_s = time.perf_counter() - started
        for kind, prompts in sets.items():
            print(f"  {enc.name}: {kind} x{len(prompts)} ...", file=sys.stderr, flush=True)
            figures = measure(enc, prompts, args.rounds, args.concurrency)
            chars = statistics.mean(len(p) for p in prompts)
            rows.append(
                {"encoder": enc.name, "prompts": kind, "chars": chars, "load_s": load_s, **figures}
            )
        enc.close()
    print_table(rows)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "embeddings.json"
    meta = {"python": platform.python_version(), "machine": platform.machine(), "args": vars(args)}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def print_table(rows: list[dict[str, object]]) -> None:
    print(
        f"\n{'encoder':<30} {'prompts':<9} {'chars':>6} {'load s':>7} "
        f"{'batched ms':>11} {'single ms':>10} {'concurrent ms':>14}"
    )
    for r in rows:
        print(
            f"{r['encoder']!s:<30} {r['prompts']!s:<9} {r['chars']:>6.0f} {r['load_s']:>7.2f} "
            f"{r['batched_ms']:>11.2f} {r['single_ms']:>10.2f} {r['concurrent_ms']:>14.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
