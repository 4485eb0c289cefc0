"""Memory of the semantic index per 10k stored prompts, as the process sees it (RSS), in
the two shapes it takes: one context holding 10k prompts (an FAQ bot: one system prompt,
many questions; HNSW) and 10k contexts of one prompt each (10k conversations; exact
scan). Answers themselves live in the store (memory or Redis) and are not counted here.

    PYTHONPATH=. python -m benchmarks.cache.memory
"""

from __future__ import annotations

import gc

import numpy as np

from router_proxy.cache.semantic import SemanticIndex

DIM, N = 256, 10_000


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def measure(contexts: int) -> float:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gc.collect()
    before = rss()
    index = SemanticIndex(DIM, capacity=1_000_000)
    for i, vector in enumerate(vectors):
        index.add(f"context-{i % contexts}", f"{i:032x}", vector)
    gc.collect()
    used = (rss() - before) / 1e6
    assert len(index) == N
    return used


def main() -> None:
    print(f"one context, {N:,} prompts (HNSW):      {measure(1):6.1f} MB")
    print(f"{N:,} contexts, one prompt each (exact): {measure(N):6.1f} MB")


if __name__ == "__main__":
    main()
