"""Matrix-factorization selector on the real routing data: quality, cost, speed.

    .venv/bin/python -m benchmarks.selection.mf [--out DIR] [--skip-open7]

1. routerbench: train on train.jsonl (5-fold cross-fitted ensemble, defaults), evaluate on
   dev.jsonl: quality and $/1k at fixed cost weights; the weight `calibrate` picks on the
   TRAINING file for $2.50 and $0.50 per 1k (the honest number), and the best dev point
   within each budget (the curve's own point, as RouterBench reports); baselines.
2. Latency: `rank()` on dev embeddings (the embedding itself excluded), p50/p99.
3. open7 (no costs): a task-stratified 20% hold-out (seed 0), train on the rest, quality
   at cost_weight 0 against the best single model and the oracle on the hold-out.
Nothing is tuned on dev or the hold-out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.selection.learned import LearnedParams
from router_proxy.selection.mf import MfSelector
from router_proxy.selection.registry import SELECTORS
from router_proxy.training.aiq import aiq, choices_at, cost_weight_grid, hull_at, sweep
from router_proxy.training.calibrate import RoutePoint, choose, curve_for, routing_curve
from router_proxy.training.data import TrainingData, stratified_holdout
from router_proxy.training.evaluate import HeldOut
from router_proxy.training.mf_train import train_mf

NAN = float("nan")  # no point within the budget
DATA = Path("/work/shared/data")
WEIGHTS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 1.0)
BUDGETS = (2.50, 0.50)


def route(selector: MfSelector, emb: np.ndarray, per_1k: np.ndarray, weight: float) -> np.ndarray:
    quality = selector.predict_batch(emb)
    return np.asarray(np.argmax(quality - weight * per_1k[None, :], axis=1))


def routerbench(out: Path, shared: SharedEncoder) -> None:
    encoder = shared.get()
    train = TrainingData.load([DATA / "routerbench/train.jsonl"], encoder)
    dev = TrainingData.load([DATA / "routerbench/dev.jsonl"], encoder)
    start = time.perf_counter()
    artifact = train_mf(train, {})
    print(
        f"training: {time.perf_counter() - start:.1f} s, best epochs per fold "
        f"{artifact.extra['best_epochs']}"
    )
    artifact.save(out)
    selector = MfSelector(tuple(artifact.models), {}, LearnedParams(artifact=out), artifact, shared)
    per_1k = artifact.arrays["cost_per_1k"].astype(np.float64)
    held = HeldOut.read(DATA / "routerbench/dev.jsonl")
    columns = held.columns(artifact.models)
    scores = held.scores[:, columns].astype(np.float64)
    costs = held.costs[:, columns].astype(np.float64) * 1000.0
    rows = np.arange(len(dev.rows))
    print("\nrouterbench dev (438 prompts): cost_weight -> quality, $/1k")
    for weight in WEIGHTS:
        pick = route(selector, dev.embeddings, per_1k, weight)
        print(f"  {weight:6g}  {scores[rows, pick].mean():.4f}  ${costs[rows, pick].mean():.3f}")
    quality = selector.predict_batch(dev.embeddings).astype(np.float64)
    dev_curve = routing_curve(quality, per_1k, scores, costs)
    area(quality, per_1k, scores, costs, dev_curve)
    train_curve = curve_for(out, DATA / "routerbench/train.jsonl")
    for budget in BUDGETS:
        weight = choose(train_curve, budget).cost_weight
        pick = route(selector, dev.embeddings, per_1k, weight)
        best = choose(dev_curve, budget)
        print(
            f"  budget ${budget:.2f}: calibrated on train w={weight:g} -> dev "
            f"{scores[rows, pick].mean():.4f} at ${costs[rows, pick].mean():.3f}; "
            f"best dev point {best.quality:.4f} at ${best.cost_per_1k:.3f} (w={best.cost_weight:g})"
        )
    reference_curves(train, dev, artifact.models, per_1k, scores, costs, quality)
    print("  baselines (dev):")
    for i, name in enumerate(artifact.models):
        print(f"    {name:36s} {scores[:, i].mean():.4f}  ${costs[:, i].mean():.3f}")
    best_score = scores.max(axis=1, keepdims=True)
    oracle = np.argmin(np.where(scores == best_score, costs, np.inf), axis=1)
    print(
        f"    {'oracle':36s} {scores[rows, oracle].mean():.4f}  ${costs[rows, oracle].mean():.3f}"
    )
    print(f"    {'random':36s} {scores.mean():.4f}  ${costs.mean():.3f}")
    latency(selector, dev.embeddings)


def area(
    quality: np.ndarray,
    per_1k: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    exact: list[RoutePoint],
) -> None:
    """AIQ on the single models' cost range, from `router-proxy eval`'s 48-weight grid
    (comparable with the kNN figures) and from the exact curve; hull at the budgets."""
    low, high = float(costs.mean(axis=0).min()), float(costs.mean(axis=0).max())
    predicted = quality.astype(np.float32)
    grid = cost_weight_grid(predicted, per_1k.astype(np.float32))
    choose = partial(choices_at, predicted, per_1k.astype(np.float32))
    swept = [
        p.point
        for p in sweep(choose, scores.astype(np.float32), (costs / 1000.0).astype(np.float32), grid)
    ]
    points = [(p.cost_per_1k, p.quality) for p in exact]
    print(
        f"  AIQ on ${low:.3f}-${high:.3f}: {aiq(swept, low, high):.4f} (48-weight grid), "
        f"{aiq(points, low, high):.4f} (exact curve, {len(points)} points)"
    )
    for budget in BUDGETS:
        print(
            f"  hull at ${budget:.2f}: {hull_at(swept, budget, NAN):.4f} (grid), "
            f"{hull_at(points, budget, NAN):.4f} (exact)"
        )


def reference_curves(
    train: TrainingData,
    dev: TrainingData,
    models: list[str],
    per_1k: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    quality: np.ndarray,
) -> None:
    """How well the predicted quality is calibrated, and the task router: a reference that
    knows each dev prompt's task label (the gateway does not) and predicts each model's
    mean training score on that task: the best any router can do without telling prompts
    of one task apart."""
    gap = np.abs(quality.mean(axis=0) - scores.mean(axis=0))
    brier = np.mean((quality - scores) ** 2)
    print(
        f"  calibration on dev: Brier {brier:.4f}; |mean predicted - mean score| per model "
        f"max {gap.max():.3f}, mean {gap.mean():.3f}"
    )
    train_scores = train.score_matrix()
    tasks = np.array([r.task for r in train.rows])
    means = {t: train_scores[tasks == t].mean(axis=0) for t in set(tasks)}
    prior = np.array([means[r.task] for r in dev.rows], dtype=np.float64)
    curve = routing_curve(prior, per_1k, scores, costs)
    for budget in BUDGETS:
        best = choose(curve, budget)
        print(
            f"  task router (knows the task) within ${budget:.2f}: {best.quality:.4f} "
            f"at ${best.cost_per_1k:.3f}"
        )


def latency(selector: MfSelector, emb: np.ndarray) -> None:
    times = []
    for _ in range(5):
        for vector in emb:
            start = time.perf_counter_ns()
            selector.rank(vector)
            times.append(time.perf_counter_ns() - start)
    us = np.array(times[len(emb) :]) / 1000  # first pass warms up
    print(
        f"\nrank() latency after the embedding: p50 {np.percentile(us, 50):.1f} us, "
        f"p99 {np.percentile(us, 99):.1f} us ({len(us)} calls)"
    )


def open7(out: Path, shared: SharedEncoder) -> None:
    data = TrainingData.load([DATA / "open7/train.jsonl"], shared.get())
    # The same hold-out as benchmarks/selection/run.py, so the figures compare.
    held = stratified_holdout([r.task for r in data.rows], 0.2, seed=0)
    train, hold = data.subset(~held), data.subset(held)
    start = time.perf_counter()
    artifact = train_mf(train, {})
    print(
        f"\nopen7: trained on {len(train.rows)} rows in {time.perf_counter() - start:.1f} s, "
        f"hold-out {len(hold.rows)} rows"
    )
    artifact.save(out)
    selector = MfSelector(tuple(artifact.models), {}, LearnedParams(artifact=out), artifact, shared)
    scores = hold.score_matrix().astype(np.float64)
    pick = np.argmax(selector.predict_batch(hold.embeddings), axis=1)
    routed = scores[np.arange(len(scores)), pick]
    singles = scores.mean(axis=0)
    best = int(np.argmax(singles))
    print(f"  mf router     {routed.mean():.4f}")
    print(f"  best single   {singles[best]:.4f} ({data.models[best]})")
    print(f"  oracle        {scores.max(axis=1).mean():.4f}")
    tasks = np.array([r.task for r in hold.rows])
    for task in sorted(set(tasks)):
        sel = tasks == task
        print(
            f"    {task:14s} mf {routed[sel].mean():.4f}  best single "
            f"{scores[sel].mean(axis=0).max():.4f}  ({sel.sum()} rows)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="where to keep the artifacts")
    parser.add_argument("--skip-open7", action="store_true")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mf-bench-"))
    SELECTORS.setdefault("mf", MfSelector)  # calibrate builds the registered selector
    shared = SharedEncoder(EmbeddingsConfig())
    routerbench(out / "routerbench", shared)
    if not args.skip_open7:
        open7(out / "open7", shared)


if __name__ == "__main__":
    main()
