"""``router-proxy train --algorithm knn``: the artifact the ``knn`` selector serves.

Training stores the prompts' embeddings (float16: half the size, and cosine changes by
well under 1e-3), every model's scores, each model's mean cost per 1,000 queries, and the
rows' groups (their ``task`` labels) with each group's mean score per model.

Options (``--option key=value``):

* ``k``: neighbours, an integer or ``auto`` (default);
* ``weights``: ``softmax`` (default; of similarity / temperature) or ``uniform``
  (RouterBench's plain mean);
* ``temperature``: the softmax temperature, a number or ``auto`` (default);
* ``shrink``: how far each neighbour's score is pulled toward its group's mean, 0..1 or
  ``auto`` (default). 0 is RouterBench's kNN; 1 routes by the neighbours' groups alone.

Why shrink: within a group of similar prompts, whether a model answers one prompt right is
mostly noise (on RouterBench and open7 a per-prompt correctness probe scores AUC ~0.5 within
a task), so a small neighbourhood's means flip between near-tied models at random, while
the groups themselves differ for real. Pulling each neighbour's score toward its group's
mean is the empirical-Bayes answer (a hierarchical prior with the group as the level
above). The groups are the rows' ``task`` field when every row has one; otherwise every row
is one group and the pull is toward the overall mean. The pull is applied to the stored
scores when the artifact is loaded, so serving costs nothing more.

``auto`` is settled by leave-one-out on the training data alone: each training prompt is
routed by its k nearest other prompts, for k in 5..400, temperatures 0.2..0.02 and shrink
0..1, the group means recomputed without that prompt. The choice maximises AIQ of the
resulting quality-cost curve when the data has costs, else the mean quality of the
top-ranked model. The table is kept in the artifact's metadata.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from router_proxy.embeddings.base import normalise
from router_proxy.selection.artifact import Artifact
from router_proxy.selection.knn import neighbour_weights
from router_proxy.training.aiq import (
    Matrix,
    aiq,
    choices_at,
    cost_weight_grid,
    fill_costs,
    point_of,
    shared_axis,
    sweep,
)
from router_proxy.training.data import TrainingData

K_GRID = (5, 10, 20, 50, 100, 200, 400)
TEMPERATURES = (0.2, 0.1, 0.05, 0.02)
SHRINKS = (0.0, 0.5, 0.75, 0.9, 1.0)
CHUNK = 512
Config = tuple[int, float | None]  # (k, temperature; None = even weights)


@dataclass(frozen=True)
class KnnOptions:
    k: int | None  # None: tuned
    weights: str
    temperature: float | None  # None: tuned (softmax) or unused (uniform)
    shrink: float | None = None  # None: tuned

    def configs(self, rows: int) -> list[Config]:
        """Candidate (k, temperature) pairs; leave-one-out sees ``rows - 1`` neighbours."""
        top = max(1, rows - 1)
        ks = [min(self.k, top)] if self.k else [k for k in K_GRID if k <= top] or [top]
        if self.weights == "uniform":
            temps: Sequence[float | None] = [None]
        else:
            temps = [self.temperature] if self.temperature else TEMPERATURES
        return [(k, t) for k in ks for t in temps]

    @property
    def shrinks(self) -> tuple[float, ...]:
        return SHRINKS if self.shrink is None else (self.shrink,)


def parse_options(options: dict[str, Any]) -> KnnOptions:
    unknown = set(options) - {"k", "weights", "temperature", "shrink"}
    if unknown:
        raise ValueError(
            f"knn: unknown option(s) {sorted(unknown)}; known: k, weights, temperature, shrink"
        )
    k, weights, temp, shrink = (
        options.get("k", "auto"),
        options.get("weights", "softmax"),
        options.get("temperature", "auto"),
        options.get("shrink", "auto"),
    )
    if k != "auto" and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"knn: k must be a positive integer or 'auto', not {k!r}")
    if weights not in ("softmax", "uniform"):
        raise ValueError(f"knn: weights must be 'softmax' or 'uniform', not {weights!r}")
    if temp != "auto" and (not isinstance(temp, int | float) or temp <= 0):
        raise ValueError(f"knn: temperature must be a positive number or 'auto', not {temp!r}")
    if shrink != "auto" and (
        isinstance(shrink, bool) or not isinstance(shrink, int | float) or not 0 <= shrink <= 1
    ):
        raise ValueError(f"knn: shrink must be a number from 0 to 1 or 'auto', not {shrink!r}")
    return KnnOptions(
        k=None if k == "auto" else int(k),
        weights=str(weights),
        temperature=None if temp == "auto" else float(temp),
        shrink=None if shrink == "auto" else float(shrink),
    )


def score_matrix(data: TrainingData) -> Matrix:
    """Scores with gaps (a row without a model's score) filled by that model's mean."""
    scores = data.score_matrix()
    means = np.nan_to_num(np.nanmean(scores, axis=0)) if scores.size else np.zeros(0)
    filled: Matrix = np.where(np.isnan(scores), means, scores).astype(np.float32)
    return filled


@dataclass(frozen=True)
class Groups:
    """Each row's group (index into ``names``) and every group's mean score per model."""

    names: list[str]
    of_row: npt.NDArray[np.int32]
    means: Matrix  # groups x models

    @classmethod
    def of(cls, data: TrainingData, scores: Matrix) -> Groups:
        tasks = [row.task for row in data.rows]
        # A row without a task would make a group of its own kind; then none is used.
        names = sorted(set(tasks)) if all(tasks) else [""]
        position = {name: i for i, name in enumerate(names)}
        of_row = np.array([position.get(task, 0) for task in tasks], dtype=np.int32)
        means = np.stack([scores[of_row == g].mean(axis=0) for g in range(len(names))])
        return cls(names, of_row, means.astype(np.float32))

    def loo_means(self, scores: Matrix) -> Matrix:
        """rows x models: row r's group mean as it would be without row r."""
        sizes = np.bincount(self.of_row, minlength=len(self.names)).astype(np.float32)
        size = sizes[self.of_row][:, None]
        total = self.means[self.of_row] * size
        alone = size <= 1  # a group of one has no other member: its mean stays
        others = np.maximum(size - 1, 1)
        out: Matrix = np.where(alone, self.means[self.of_row], (total - scores) / others)
        return out


def train_knn(data: TrainingData, options: dict[str, Any]) -> Artifact:
    opts = parse_options(options)
    if not data.models:
        raise ValueError("knn needs `scores`: no model has a score in every row")
    vectors = normalise(data.embeddings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # data without costs
        scores, per_1k = score_matrix(data), data.cost_per_1k()
    groups = Groups.of(data, scores)
    configs = opts.configs(len(data.rows))
    table: list[dict[str, Any]] = []
    if len(configs) > 1 or len(opts.shrinks) > 1:
        costs = fill_costs(data.cost_matrix())
        table = tune(vectors, scores, costs, per_1k, groups, configs, opts.shrinks)
        best = max(table, key=lambda entry: entry["score"])
        k, temperature, shrink = int(best["k"]), best["temperature"], float(best["shrink"])
    else:
        (k, temperature), shrink = configs[0], opts.shrinks[0]
    return Artifact(
        algorithm="knn",
        models=list(data.models),
        encoder=data.encoder,
        arrays={
            "embeddings": vectors.astype(np.float16),
            "scores": scores,
            "cost_per_1k": per_1k,
            "groups": groups.of_row,
            "group_means": groups.means,
        },
        data_hash=data.data_hash,
        params=dict(options),
        extra={
            "k": k,
            "weights": "uniform" if temperature is None else "softmax",
            "temperature": temperature,
            "shrink": shrink,
            "group_names": groups.names,
            "prompts": len(data.rows),
            "tuning": table,
            "tuning_metric": "aiq" if per_1k.any() else "quality",
        },
    )


def loo_neighbours(vectors: Matrix, k: int) -> tuple[npt.NDArray[np.intp], Matrix]:
    """Each row's ``k`` most similar other rows, most similar first: (indices, sims)."""
    n = vectors.shape[0]
    index = np.empty((n, k), dtype=np.intp)
    sims = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, CHUNK):
        block = vectors[start : start + CHUNK] @ vectors.T
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = -np.inf  # not its own neighbour
        top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < n else np.argsort(-block)
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        index[start : start + len(rows)] = np.take_along_axis(top, order, axis=1)[:, :k]
        sims[start : start + len(rows)] = np.take_along_axis(top_sims, order, axis=1)[:, :k]
    return index, sims


def tune(
    vectors: Matrix,
    scores: Matrix,
    costs: Matrix,
    per_1k: Matrix,
    groups: Groups,
    configs: list[Config],
    shrinks: Sequence[float],
) -> list[dict[str, Any]]:
    """Leave-one-out score of every (k, temperature, shrink) on the training rows.

    A prediction is ``(1 - shrink) * raw + shrink * group``: the neighbours' weighted
    scores and the weighted means of the neighbours' groups. A neighbour in the left-out
    row's own group sees that group's mean without the row (``Groups.loo_means``), else
    the row's own score would leak into its prediction through the mean."""
    index, sims = loo_neighbours(vectors, max(k for k, _ in configs))
    own = groups.of_row
    # How each row's group mean moves when that row leaves it.
    moved = groups.loo_means(scores) - groups.means[own]
    entries: list[tuple[int, float | None, float]] = []
    curves = []
    for k, temperature in configs:
        weights = neighbour_weights(sims[:, :k], temperature)
        near = index[:, :k]
        raw = np.einsum("nk,nkm->nm", weights, scores[near])
        same = (weights * (own[near] == own[:, None])).sum(axis=1, keepdims=True)
        group = np.einsum("nk,nkm->nm", weights, groups.means[own[near]]) + same * moved
        for shrink in shrinks:
            predicted = (1.0 - shrink) * raw + shrink * group
            entries.append((k, temperature, shrink))
            if per_1k.any():
                grid = cost_weight_grid(predicted, per_1k, points=32)
                curve = sweep(partial(choices_at, predicted, per_1k), scores, costs, grid)
                curves.append([p.point for p in curve])
            else:
                curves.append([point_of(choices_at(predicted, per_1k, 0.0), scores, costs)])
    low, high = shared_axis(curves)
    return [
        {"k": k, "temperature": t, "shrink": s, "score": round(aiq(curve, low, high), 6)}
        for (k, t, s), curve in zip(entries, curves, strict=True)
    ]
