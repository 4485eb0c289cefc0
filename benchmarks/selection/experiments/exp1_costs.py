"""Idea 1: per-prompt cost instead of each model's mean cost.

kNN quality prediction (the package's k=400, softmax t=0.1, static whole-prompt
embedding; LOO on train chose it) routed with:
  mean      each model's mean training cost (today);
  true      the row's recorded cost (an oracle: completion tokens are not known upfront);
  est-len   per model, cost ~ a_task + b_task * prompt chars, fitted on train; the task is
            the nearest training prompt's task (what serving can compute);
  est-knn   per model, the neighbours' mean cost (same weights as the quality) rescaled
            by this prompt's length over the neighbours' mean length, on the prompt part.
Also the task-label router for reference.

    PYTHONPATH=$PWD nice -n 10 /work/main/.venv/bin/python \
        benchmarks/selection/experiments/exp1_costs.py [--dev]
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.selection.experiments.common import (
    HEADER,
    Split,
    cross_predict,
    curve,
    features,
    fmt,
    folds,
    join,
    knn_fit,
    load,
    mean_cost_per_1k,
    summary,
    task_fit,
)


def nearest_task(split: Split, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    x = features(split, "static_prompt")
    sims = x[test] @ x[train].T
    return split.tasks[train][np.argmax(sims, axis=1)]


def est_len_costs(split: Split, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per model and task: cost ~ a + b * prompt chars (least squares on train)."""
    chars = np.array([len(p) for p in split.prompts], dtype=np.float64)
    task = nearest_task(split, train, test)
    out = np.zeros((len(test), len(split.models)))
    for t in sorted(set(split.tasks)):
        tr = train[split.tasks[train] == t]
        a = np.stack([np.ones(len(tr)), chars[tr]], axis=1)
        coef, *_ = np.linalg.lstsq(a, split.costs[tr].astype(np.float64), rcond=None)
        rows = task == t
        out[rows] = np.stack([np.ones(rows.sum()), chars[test][rows]], axis=1) @ coef
    return np.maximum(out, 1e-7) * 1000.0


def per_fold(split: Split, make) -> np.ndarray:
    fold = folds(split.tasks)
    out = np.zeros_like(split.costs, dtype=np.float64)
    for f in range(fold.max() + 1):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        out[test] = make(split, train, test)
    return out


def mean_costs(split: Split, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    return np.broadcast_to(mean_cost_per_1k(split, train), (len(test), len(split.models)))


def run(split: Split, predict, costs_of) -> None:
    print(HEADER)
    for label, cost in costs_of.items():
        print(fmt(label, summary(curve(predict, cost, split), split)))


def main() -> None:
    train = load("train")
    if "--dev" in sys.argv:
        dev = load("dev")
        both = join(train, dev)
        tr, te = np.arange(len(train)), np.arange(len(train), len(both))
        predict = knn_fit()(both, tr)(both, te)
        costs = {
            "knn, mean cost": mean_costs(both, tr, te),
            "knn, true per-row cost (oracle)": dev.costs * 1000.0,
            "knn, est-len cost": est_len_costs(both, tr, te),
        }
        print("## dev (trained on all of train)")
        run(dev, predict, costs)
        return
    print("## train, 5-fold CV")
    predict = cross_predict(train, knn_fit())
    costs = {
        "knn, mean cost": per_fold(train, mean_costs),
        "knn, true per-row cost (oracle)": train.costs * 1000.0,
        "knn, est-len cost": per_fold(train, est_len_costs),
    }
    run(train, predict, costs)
    task = cross_predict(train, task_fit())
    run(
        train,
        task,
        {
            "task-label, mean cost": per_fold(train, mean_costs),
            "task-label, true per-row cost": train.costs * 1000.0,
        },
    )
    # How much do costs vary inside a task? (coefficient of variation per model)
    for t in sorted(set(train.tasks)):
        c = train.costs[train.tasks == t]
        print(t, "cost CV per model:", np.round(c.std(0) / c.mean(0), 2).tolist())


if __name__ == "__main__":
    main()
