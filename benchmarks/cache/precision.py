"""Precision of the semantic cache on pairs written for it: paraphrases that should hit
(pairs_paraphrase.tsv) and near-misses that must not (pairs_near_miss.tsv: negations,
other numbers, entities, units, opposites, word order).

For each threshold: the share of paraphrases served (hit rate) and of near-misses served
(false hits), with the meaning guard (what the gateway does) and without it (similarity
alone), per category; and the default threshold's figures.

    PYTHONPATH=. python -m benchmarks.cache.precision [--encoder static|sentence-transformers]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from router_proxy.cache.config import DEFAULT_SEMANTIC_THRESHOLD
from router_proxy.cache.guard import same_question
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.shared import SharedEncoder

HERE = Path(__file__).resolve().parent
THRESHOLDS = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)


def load(name: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in (HERE / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            category, a, b = line.split("\t")
            rows.append((category, a, b))
    return rows


def scores(encoder_backend: str, pairs: list[tuple[str, str, str]]) -> np.ndarray:
    encoder = SharedEncoder(EmbeddingsConfig(backend=encoder_backend)).get()  # type: ignore[arg-type]
    calibration = encoder.calibration
    a = encoder.encode([p[1] for p in pairs])
    b = encoder.encode([p[2] for p in pairs])
    cosines = (a * b).sum(axis=1)
    return (cosines - calibration.unrelated) / calibration.scale


def rate(mask: np.ndarray) -> str:
    return f"{mask.mean() * 100:5.1f}% ({int(mask.sum())}/{mask.size})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="static", choices=["static", "sentence-transformers"])
    args = parser.parse_args()
    paraphrases, near = load("pairs_paraphrase.tsv"), load("pairs_near_miss.tsv")
    pairs = paraphrases + near
    score = scores(args.encoder, pairs)
    guard = np.array([same_question(a, b) for _, a, b in pairs])
    is_para = np.array([i < len(paraphrases) for i in range(len(pairs))])
    print(f"encoder: {args.encoder}; {len(paraphrases)} paraphrases, {len(near)} near-misses")
    print(
        "threshold | paraphrases hit (guard) | false hits (guard) | hit (no guard) "
        "| false (no guard)"
    )
    for t in (*THRESHOLDS, DEFAULT_SEMANTIC_THRESHOLD):
        above = score >= t
        print(
            f"{t:9.2f} | {rate((above & guard)[is_para]):>23} "
            f"| {rate((above & guard)[~is_para]):>18} "
            f"| {rate(above[is_para]):>14} | {rate(above[~is_para]):>16}"
        )
    t = DEFAULT_SEMANTIC_THRESHOLD
    print(f"\nper category at the default threshold {t} (with the guard; without it):")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (category, _, _) in enumerate(pairs):
        groups[("paraphrase/" if is_para[i] else "near-miss/") + category].append(i)
    for name, index in sorted(groups.items()):
        idx = np.array(index)
        served = (score[idx] >= t) & guard[idx]
        print(f"  {name:22} served {rate(served):>16};  {rate(score[idx] >= t):>16}")
    missed = [pairs[i] for i in np.flatnonzero(~is_para & (score >= t) & guard)]
    for category, a, b in missed:
        print(f"  FALSE HIT [{category}] {a!r} ~ {b!r}")


if __name__ == "__main__":
    main()
