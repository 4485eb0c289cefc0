"""How noisy are these figures? Repeated 5-fold CV on train (other fold seeds) for the
task-label router, the whole-prompt kNN and the CV-chosen question kNN (exp2's CHOSEN);
and a paired bootstrap over dev rows of the difference between the question kNN and the
whole-prompt kNN (predictions fixed, curve re-swept per resample).

    PYTHONPATH=$PWD nice -n 10 /work/main/.venv/bin/python \
        benchmarks/selection/experiments/exp5_noise.py [--dev]
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.selection.experiments.common import (
    Split,
    cross_predict,
    curve,
    holdout_predict,
    knn_fit,
    load,
    mean_cost_per_1k,
    summary,
    task_fit,
)
from benchmarks.selection.experiments.exp2_question import CHOSEN, gated_knn_fit


def routers():
    kind, k, t, prior = CHOSEN
    return {
        "task-label": task_fit(),
        "knn whole prompt": knn_fit(),
        f"gated knn {kind}": gated_knn_fit(kind, k, t, prior),
    }


def resample(split: Split, index: np.ndarray) -> Split:
    return Split(
        split.name,
        [split.rows[i] for i in index],
        split.models,
        split.tasks[index],
        split.scores[index],
        split.costs[index],
    )


def main() -> None:
    train = load("train")
    per_1k = mean_cost_per_1k(train, np.arange(len(train)))
    if "--dev" not in sys.argv:
        print("| router | seed | AIQ | q<=$0.50 | q<=$2.50 |\n|---|---:|---:|---:|---:|")
        for name, fit in routers().items():
            for seed in (0, 1, 2, 3):
                s = summary(curve(cross_predict(train, fit, seed=seed), per_1k, train), train)
                print(
                    f"| {name} | {seed} | {s['aiq']:.4f} | {s['q@0.5']:.4f} | {s['q@2.5']:.4f} |",
                    flush=True,
                )
        return
    dev = load("dev")
    preds = {name: holdout_predict(train, dev, fit) for name, fit in routers().items()}
    names = list(preds)
    rng = np.random.default_rng(0)
    diffs = {k: [] for k in ("aiq", "q@0.5", "q@2.5")}
    for _ in range(200):
        index = rng.integers(0, len(dev), len(dev))
        sub = resample(dev, index)
        a = summary(curve(preds[names[2]][index], per_1k, sub, points=48), sub)
        b = summary(curve(preds[names[1]][index], per_1k, sub, points=48), sub)
        for key in diffs:
            diffs[key].append(a[key] - b[key])
    for key, values in diffs.items():
        lo, hi = np.percentile(values, [5, 95])
        print(
            f"dev bootstrap, {names[2]} minus {names[1]}, {key}: "
            f"mean {np.mean(values):+.4f}, 90% interval [{lo:+.4f}, {hi:+.4f}]"
        )


if __name__ == "__main__":
    main()
