"""CASCAL on RouterBench: trained on responses only, judged with the true scores.

1. Tuning, on TRAIN only: a stratified 80/20 split of train.jsonl; a small grid of
   training options is trained on the 80% and scored (AIQ) on the 20% with its labels.
2. The chosen options are trained on all of train.jsonl (responses only: the trainer
   never reads `scores`), then evaluated on dev.jsonl with the true scores and costs:
   a sweep of cost_weight gives (US$ per 1,000 queries, mean quality) points; AIQ over
   the single models' cost range; single models, random, oracle and the "zero router"
   (the hull of single models) for reference.
3. The budget operating point is chosen without labels: the smallest cost_weight whose
   routed cost on the TRAIN prompts is <= $0.50 per 1,000 (costs are prices, not labels).
4. Latency: ``rank()`` per prompt after embedding, p50/p99.

    .venv/bin/python -m benchmarks.selection.cascal [--no-tune] [--budget 0.5]

Writes results/cascal.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import ENCODER_BACKENDS
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.selection.cascal import CascalSelector, NicheIndex
from router_proxy.selection.learned import LearnedParams
from router_proxy.training.aiq import aiq, best_under
from router_proxy.training.cascal_train import train_cascal
from router_proxy.training.data import TrainingData, stratified_holdout

HERE = Path(__file__).resolve().parent
NAN = float("nan")  # no point within the budget
DATA = Path("/work/shared/data/routerbench")
WEIGHTS = [0.0, *np.round(np.logspace(-4, 1, 31), 6).tolist()]
GRID: list[dict[str, Any]] = [
    {"scale": scale, "code_similarity": sim}
    for scale in ("ranking", "consensus")
    for sim in (0.2, 0.35, 0.5)
] + [{"reliability_by_task": True}, {"niches_by_task": False}]


def split(data: TrainingData, fraction: float = 0.2, seed: int = 0) -> tuple[Any, Any]:
    held = stratified_holdout([r.task for r in data.rows], fraction, seed)
    return np.flatnonzero(~held), np.flatnonzero(held)


def sweep(values: np.ndarray, data: TrainingData, per_1k: np.ndarray) -> list[dict[str, Any]]:
    scores, costs = data.score_matrix(), data.cost_matrix() * 1000.0
    rows = np.arange(len(values))
    points = []
    for w in WEIGHTS:
        pick = np.argmax(values - w * per_1k, axis=1)
        points.append(
            {
                "cost_weight": w,
                "cost_per_1k": float(costs[rows, pick].mean()),
                "quality": float(scores[rows, pick].mean()),
                "picks": np.bincount(pick, minlength=len(data.models)).tolist(),
            }
        )
    return points


def singles(data: TrainingData) -> dict[str, tuple[float, float]]:
    scores, costs = data.score_matrix(), data.cost_matrix() * 1000.0
    return {
        m: (float(costs[:, j].mean()), float(scores[:, j].mean()))
        for j, m in enumerate(data.models)
    }


def tune(train: TrainingData, budget: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    fit_idx, val_idx = split(train)
    fit, val = train.subset(fit_idx), train.subset(val_idx)
    ref = singles(val)
    low, high = min(c for c, _ in ref.values()), max(c for c, _ in ref.values())
    table = []
    for options in GRID:
        art = train_cascal(fit, options)
        pts = sweep(NicheIndex(art).predict_batch(val.embeddings), val, art.arrays["cost_per_1k"])
        xy = [(p["cost_per_1k"], p["quality"]) for p in pts]
        table.append(
            {
                "options": options,
                "aiq": aiq(xy, low, high),
                "at_budget": best_under(xy, budget, NAN),
            }
        )
        print(
            f"  tune {options}: AIQ {table[-1]['aiq']:.4f}, <=${budget}: "
            f"{table[-1]['at_budget']:.4f}",
            flush=True,
        )
    best = max(table, key=lambda t: (t["aiq"], t["at_budget"]))
    return dict(best["options"]), table


def budget_weight(art: Any, train: TrainingData, budget: float) -> float:
    """Smallest swept cost_weight whose routed cost on the TRAIN prompts is within budget."""
    values = NicheIndex(art).predict_batch(train.embeddings)
    costs = train.cost_matrix() * 1000.0
    rows = np.arange(len(values))
    for w in WEIGHTS:
        pick = np.argmax(values - w * art.arrays["cost_per_1k"], axis=1)
        if costs[rows, pick].mean() <= budget:
            return w
    return WEIGHTS[-1]


def latency(art: Any, embeddings: np.ndarray, cost_weight: float) -> dict[str, float]:
    selector = CascalSelector(
        tuple(art.models),
        {},
        LearnedParams(artifact=Path("unused"), cost_weight=cost_weight),
        art,
        SharedEncoder(),
    )
    times = []
    for _ in range(5):
        for vector in embeddings:
            start = time.perf_counter()
            selector.rank(vector)
            times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return {"p50_us": statistics.median(times), "p99_us": times[int(0.99 * len(times))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=0.5, help="US$ per 1,000 queries")
    parser.add_argument("--no-tune", action="store_true", help="train with the defaults")
    args = parser.parse_args()

    encoder = ENCODER_BACKENDS["static"](EmbeddingsConfig())
    train = TrainingData.load([DATA / "train.jsonl"], encoder, field="responses")
    dev = TrainingData.load([DATA / "dev.jsonl"], encoder, field="responses")
    options: dict[str, Any] = {}
    tuning: list[dict[str, Any]] = []
    if not args.no_tune:
        print("tuning on an 80/20 split of train.jsonl")
        options, tuning = tune(train, args.budget)
    start = time.perf_counter()
    art = train_cascal(train, options)
    train_s = time.perf_counter() - start
    per_1k = art.arrays["cost_per_1k"]
    points = sweep(NicheIndex(art).predict_batch(dev.embeddings), dev, per_1k)
    xy = [(p["cost_per_1k"], p["quality"]) for p in points]
    ref = singles(dev)
    low, high = min(c for c, _ in ref.values()), max(c for c, _ in ref.values())
    w = budget_weight(art, train, args.budget)
    chosen = next(p for p in points if p["cost_weight"] == w)
    scores, costs = dev.score_matrix(), dev.cost_matrix() * 1000.0
    best = np.max(scores, axis=1, keepdims=True)
    oracle = np.argmin(np.where(scores == best, costs, np.inf), axis=1)
    rows = np.arange(len(scores))
    under = {m: v for m, v in ref.items() if v[0] <= args.budget}
    result = {
        "options": options,
        "tuning": tuning,
        "train_seconds": train_s,
        "niches": art.extra["niches"],
        "far_distance": art.extra["far_distance"],
        "reliability": art.extra["reliability"],
        "sweep": points,
        "aiq": {"cascal": aiq(xy, low, high), "zero_router": aiq(list(ref.values()), low, high)},
        "best_at_budget_on_dev_curve": best_under(xy, args.budget, NAN),
        "budget_point_chosen_on_train": chosen,
        "singles": ref,
        "best_single_under_budget": max(under.items(), key=lambda kv: kv[1][1]),
        "random": (float(costs.mean()), float(scores.mean())),
        "oracle": (float(costs[rows, oracle].mean()), float(scores[rows, oracle].mean())),
        "latency": latency(art, dev.embeddings, w),
    }
    report(result, args.budget)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "cascal.json").write_text(json.dumps(result, indent=2) + "\n")


def report(r: dict[str, Any], budget: float) -> None:
    print(
        f"\noptions {r['options'] or 'defaults'}; {r['niches']} niches; "
        f"trained in {r['train_seconds']:.1f} s"
    )
    print(f"{'cost_weight':>11} {'$/1k':>7} {'quality':>8}")
    for p in r["sweep"]:
        print(f"{p['cost_weight']:>11.4g} {p['cost_per_1k']:>7.3f} {p['quality']:>8.4f}")
    print(f"AIQ: cascal {r['aiq']['cascal']:.4f}, zero router {r['aiq']['zero_router']:.4f}")
    c = r["budget_point_chosen_on_train"]
    print(
        f"budget ${budget}/1k, cost_weight {c['cost_weight']} chosen on train: "
        f"quality {c['quality']:.4f} at ${c['cost_per_1k']:.3f}/1k on dev"
    )
    name, (cost, quality) = r["best_single_under_budget"]
    print(
        f"best single under budget: {name} {quality:.4f} at ${cost:.3f}/1k; "
        f"random {r['random'][1]:.4f}; oracle {r['oracle'][1]:.4f} at ${r['oracle'][0]:.3f}"
    )
    print(
        f"rank() latency p50 {r['latency']['p50_us']:.1f} us, p99 {r['latency']['p99_us']:.1f} us"
    )


if __name__ == "__main__":
    main()
