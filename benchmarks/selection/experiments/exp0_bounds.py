"""Upper bounds: how much within-task signal would reach the targets?

Not selectors (they read the rows' true scores): a synthetic, calibrated predictor that
knows each prompt's task mean p[m] and a noisy copy of the truth: for each row and model
it sees y' = the true 0/1 outcome with probability rho, else an independent draw from
Bernoulli(p[m]); its calibrated estimate is E[y | y'] = (1 - rho) * p[m] + rho * y'.
It routes as the selectors do (mean costs). Sweeping ``rho`` gives the
within-task AUC each predictor has and the quality it reaches at <= $0.50 and <= $2.50,
so we can read off the AUC the targets need. Evaluated on train (no fitting involved).

    PYTHONPATH=$PWD nice -n 10 /work/main/.venv/bin/python \
        benchmarks/selection/experiments/exp0_bounds.py
"""

from __future__ import annotations

import numpy as np

from benchmarks.selection.experiments.common import TASKS, curve, load, mean_cost_per_1k, summary
from benchmarks.selection.experiments.exp3_classifiers import auc_table


def main() -> None:
    train = load("train")
    per_1k = mean_cost_per_1k(train, np.arange(len(train)))
    means = np.stack([train.scores[train.tasks == t].mean(0) for t in TASKS])
    prior = means[[TASKS.index(t) for t in train.tasks]]
    print(
        "| rho | within-task AUC arc / mbpp / wino | AIQ | q<=$0.50 (hull) "
        "| q<=$2.50 (hull) |\n|---|---|---:|---:|---:|"
    )
    for rho in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.6, 1.0):
        rng = np.random.default_rng(0)
        keep = rng.random(train.scores.shape) < rho
        draw = (rng.random(train.scores.shape) < prior).astype(np.float32)
        seen = np.where(keep, train.scores, draw)
        pred = ((1 - rho) * prior + rho * seen).astype(np.float32)
        s = summary(curve(pred, per_1k, train), train)
        auc = auc_table(train, pred) if rho > 0 else {t: 0.5 for t in TASKS}
        print(
            f"| {rho} | {' / '.join(f'{v:.3f}' for v in auc.values())} | {s['aiq']:.4f} | "
            f"{s['q@0.5']:.4f} ({s['hull@0.5']:.4f}) | {s['q@2.5']:.4f} "
            f"({s['hull@2.5']:.4f}) |"
        )


if __name__ == "__main__":
    main()
