"""The semantic cache's vector index at scale: lookup latency p50/p99 and memory per 10k
entries for one tenant's context holding N prompts, on usearch's HNSW (what the gateway
uses past ``SMALL_CONTEXT`` entries) and on an exact scan (numpy, what it uses below).

Vectors are random unit vectors of the static encoder's width (256): the worst case for
an HNSW graph (no clusters to exploit). Queries are stored vectors plus noise (a
paraphrase: its stored original must come back first: recall@1) and fresh random ones.

    PYTHONPATH=. python -m benchmarks.cache.ann --entries 10000 1000000 [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from router_proxy.cache.semantic import HNSW_OPTIONS, new_hnsw

DIM = 256


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def percentiles(seconds: list[float]) -> str:
    p50, p99 = np.percentile(np.array(seconds) * 1e6, [50, 99])
    return f"p50 {p50:7.0f} us  p99 {p99:7.0f} us"


def bench(n: int, queries: int, threads: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    index = new_hnsw(DIM)
    began = time.perf_counter()
    for start in range(0, n, 10_000):
        batch = unit(rng, min(10_000, n - start))
        index.add(np.arange(start, start + len(batch)), batch, threads=threads)
        if start and start % 100_000 == 0:
            print(f"  {start:,} added, {time.perf_counter() - began:.0f} s", file=sys.stderr)
    built = time.perf_counter() - began
    # Paraphrase-like queries: stored vectors (regenerated from the seed) plus noise.
    probe = np.random.default_rng(seed)
    stored = unit(probe, min(n, 10_000))
    picks = rng.integers(0, len(stored), queries)
    noisy = stored[picks] + 0.3 * unit(rng, queries) / np.sqrt(2)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    times, found = [], 0
    for q, want in zip(noisy, picks, strict=True):
        t = time.perf_counter()
        matches = index.search(q, 4)
        times.append(time.perf_counter() - t)
        found += int(len(matches.keys) > 0 and matches.keys[0] == want)
    fresh: list[float] = []
    for q in unit(rng, queries):
        t = time.perf_counter()
        index.search(q, 4)
        fresh.append(time.perf_counter() - t)
    per_10k = index.memory_usage / n * 10_000 / 1e6
    print(
        f"usearch HNSW {HNSW_OPTIONS}  n={n:>9,}  build {built:7.1f} s  "
        f"lookup (paraphrase) {percentiles(times)}  recall@1 {found / queries:.3f}  "
        f"lookup (new prompt) {percentiles(fresh)}  memory {per_10k:.1f} MB per 10k"
    )
    if n <= 1_000_000:
        exact = np.vstack([unit(np.random.default_rng(seed), min(n, 10_000))] * (n // 10_000 or 1))
        times = []
        for q in noisy[:200]:
            t = time.perf_counter()
            scores = exact @ q
            int(np.argmax(scores))
            times.append(time.perf_counter() - t)
        print(f"exact scan (numpy f32)  n={len(exact):>9,}  lookup {percentiles(times)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, nargs="+", default=[10_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="for building (lookups: one)")
    args = parser.parse_args()
    for n in args.entries:
        bench(n, args.queries, args.threads)


if __name__ == "__main__":
    main()
