"""Idea 4: per-task policies, including agreement cascades (not a pure selector).

Per task (at serving: the nearest training prompt's task; exact on every train row
under CV and on dev), a policy is one of
  single(m)              send to m;
  agree(a, b -> e)       call a and b; if their final answers agree (option letter,
                         ``training/answers.py``), return a's; otherwise also call e and
                         return e's. Cost: a + b (+ e when they disagree).
  agree3(a, b, c -> e)   the same with three first-stage models that must all agree.
MBPP (code) has no cheap agreement test, so it only gets single models.

A budget is met by the combination of per-task policies with the best training
quality whose training cost (mean over all rows, $/1k) fits it. Train-CV: chosen on 4
folds, judged on the 5th, for a grid of budgets; the held-out points form the curve
(AIQ on the single models' axis, as everywhere here). ``--dev``: chosen on all of train,
judged once on dev.

This needs the gateway to call models in sequence and compare their answers (a cascade),
not only to rank them: see results.md.

    PYTHONPATH=$PWD nice -n 10 /work/main/.venv/bin/python \
        benchmarks/selection/experiments/exp4_cascade.py [--dev] [--no-cascade]
"""

from __future__ import annotations

import itertools
import sys

import numpy as np

from benchmarks.selection.experiments.common import (
    DATA,
    TASKS,
    Split,
    fmt,
    folds,
    load,
    summary,
)
from router_proxy.training.aiq import upper_hull
from router_proxy.training.answers import extract_rows
from router_proxy.training.dataset import read_rows

CHEAP = (
    "WizardLM/WizardLM-13B-V1.2",
    "claude-instant-v1",
    "gpt-3.5-turbo-1106",
    "meta/code-llama-instruct-34b-chat",
    "meta/llama-2-70b-chat",
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
)


def answers(split: Split) -> np.ndarray:
    rows = read_rows(DATA / f"{split.name}.jsonl")
    table = extract_rows(rows, split.models)
    return np.array(
        [[a if a is not None else f"none{j}" for j, a in enumerate(r)] for r in table], dtype=object
    )


def policies(split: Split, ans: np.ndarray, cascade: bool):
    """Per task: list of (name, per-row quality vector, per-row cost vector)."""
    m = {name: j for j, name in enumerate(split.models)}
    out = {}
    for t in TASKS:
        rows = np.flatnonzero(split.tasks == t)
        s, c, a = split.scores[rows], split.costs[rows] * 1000.0, ans[rows]
        pols = [(f"single({x})", s[:, j], c[:, j]) for x, j in m.items()]
        if cascade and t != "mbpp":
            for e in split.models:
                je = m[e]
                for x, y in itertools.permutations(CHEAP, 2):
                    jx, jy = m[x], m[y]
                    agree = a[:, jx] == a[:, jy]
                    pols.append(
                        (
                            f"agree({x},{y}->{e})",
                            np.where(agree, s[:, jx], s[:, je]),
                            c[:, jx] + c[:, jy] + np.where(agree, 0.0, c[:, je]),
                        )
                    )
                for x, y, z in itertools.combinations(CHEAP, 3):
                    jx, jy, jz = m[x], m[y], m[z]
                    agree = (a[:, jx] == a[:, jy]) & (a[:, jx] == a[:, jz])
                    # accept the strongest of the three (they agree, so all equal)
                    pols.append(
                        (
                            f"agree3({x},{y},{z}->{e})",
                            np.where(agree, s[:, jx], s[:, je]),
                            c[:, jx] + c[:, jy] + c[:, jz] + np.where(agree, 0.0, c[:, je]),
                        )
                    )
        out[t] = (rows, pols)
    return out


def choose(split: Split, pols, subset: np.ndarray, budget: float):
    """Best-quality combination (one policy per task) whose mean cost over ``subset`` rows
    fits ``budget``; candidates are each task's hull of (cost, quality) points."""
    n = len(subset)
    inset = np.zeros(len(split), dtype=bool)
    inset[subset] = True
    per_task = []
    for t in TASKS:
        rows, plist = pols[t]
        mask = inset[rows]
        pts = {}
        for i, (_, q, c) in enumerate(plist):
            # contributions to the overall mean
            pts[i] = (c[mask].sum() / n, q[mask].sum() / n)
        # keep the Pareto front (cheaper or better) to bound the enumeration
        order = sorted(pts, key=lambda i: (pts[i][0], -pts[i][1]))
        front, best = [], -1.0
        for i in order:
            if pts[i][1] > best:
                front.append(i)
                best = pts[i][1]
        per_task.append([(i, *pts[i]) for i in front])
    best_combo, best_q = None, -1.0
    for combo in itertools.product(*per_task):
        cost = sum(x[1] for x in combo)
        q = sum(x[2] for x in combo)
        if cost <= budget and q > best_q:
            best_combo, best_q = tuple(x[0] for x in combo), q
    return best_combo


def apply(split: Split, pols, combo, rows: np.ndarray):
    quality = np.zeros(len(split))
    cost = np.zeros(len(split))
    for t, i in zip(TASKS, combo, strict=True):
        trows, plist = pols[t]
        quality[trows] = plist[i][1]
        cost[trows] = plist[i][2]
    return float(cost[rows].mean()), float(quality[rows].mean())


BUDGETS = np.concatenate([np.geomspace(0.08, 5.2, 40), [0.5, 2.5]])


def main() -> None:
    cascade = "--no-cascade" not in sys.argv
    train = load("train")
    ans = answers(train)
    pols = policies(train, ans, cascade)
    label = "per-task policy" + (" + agreement cascades" if cascade else " (single models)")
    if "--dev" in sys.argv:
        dev = load("dev")
        dpols = policies(dev, answers(dev), cascade)
        points = []
        for b in BUDGETS:
            combo = choose(train, pols, np.arange(len(train)), b)
            if combo is None:
                continue
            points.append(apply(dev, dpols, combo, np.arange(len(dev))))
            if b in (0.5, 2.5):
                names = [pols[t][1][i][0] for t, i in zip(TASKS, combo, strict=True)]
                print(
                    f"budget {b}: train-chosen {names} -> dev ${points[-1][0]:.3f} "
                    f"q {points[-1][1]:.4f}"
                )
        print(fmt(f"{label} (dev)", summary(points, dev)))
        return
    fold = folds(train.tasks)
    points = []
    for b in BUDGETS:
        cost = quality = 0.0
        for f in range(fold.max() + 1):
            fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            combo = choose(train, pols, fit, b)
            if combo is None:
                break
            c, q = apply(train, pols, combo, held)
            cost += c * len(held) / len(train)
            quality += q * len(held) / len(train)
        else:
            points.append((cost, quality))
            if b in (0.5, 2.5):
                combo = choose(train, pols, np.arange(len(train)), b)
                names = [pols[t][1][i][0] for t, i in zip(TASKS, combo, strict=True)]
                print(f"budget {b}: CV ${cost:.3f} q {quality:.4f}; on all train: {names}")
    print(fmt(f"{label} (train 5-fold CV)", summary(points, train)))
    print("hull:", [(round(c, 3), round(q, 4)) for c, q in upper_hull(points)])


if __name__ == "__main__":
    main()
