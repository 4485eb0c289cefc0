"""``router-proxy train --algorithm knn``: the artifact the ``knn`` selector serves.

Training stores the prompts' embeddings (float16: half the size, and cosine changes by
well under 1e-3), every model's scores and each model's mean cost per 1,000 queries.

Options (``--option key=value``):

* ``k``: neighbours, an integer or ``auto`` (default);
* ``weights``: ``softmax`` (default; of similarity / temperature) or ``uniform``
  (RouterBench's plain mean);
* ``temperature``: the softmax temperature, a number or ``auto`` (default).

``auto`` is settled by leave-one-out on the training data alone: each training prompt is
routed by its k nearest other prompts, for k in 5..400 and temperatures 0.2..0.02. The
choice maximises AIQ of the resulting quality-cost curve when the data has costs, else
the mean quality of the top-ranked model. The table is kept in the artifact's metadata.
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
CHUNK = 512
Config = tuple[int, float | None]  # (k, temperature; None = even weights)


@dataclass(frozen=True)
class KnnOptions:
    k: int | None  # None: tuned
    weights: str
    temperature: float | None  # None: tuned (softmax) or unused (uniform)

    def configs(self, rows: int) -> list[Config]:
        """Candidate (k, temperature) pairs; leave-one-out sees ``rows - 1`` neighbours."""
        top = max(1, rows - 1)
        ks = [min(self.k, top)] if self.k else [k for k in K_GRID if k <= top] or [top]
        if self.weights == "uniform":
            temps: Sequence[float | None] = [None]
        else:
            temps = [self.temperature] if self.temperature else TEMPERATURES
        return [(k, t) for k in ks for t in temps]


def parse_options(options: dict[str, Any]) -> KnnOptions:
    unknown = set(options) - {"k", "weights", "temperature"}
    if unknown:
        raise ValueError(
            f"knn: unknown option(s) {sorted(unknown)}; known: k, weights, temperature"
        )
    k, weights, temp = (
        options.get("k", "auto"),
        options.get("weights", "softmax"),
        options.get("temperature", "auto"),
    )
    if k != "auto" and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"knn: k must be a positive integer or 'auto', not {k!r}")
    if weights not in ("softmax", "uniform"):
        raise ValueError(f"knn: weights must be 'softmax' or 'uniform', not {weights!r}")
    if temp != "auto" and (not isinstance(temp, int | float) or temp <= 0):
        raise ValueError(f"knn: temperature must be a positive number or 'auto', not {temp!r}")
    return KnnOptions(
        k=None if k == "auto" else int(k),
        weights=str(weights),
        temperature=None if temp == "auto" else float(temp),
    )


def score_matrix(data: TrainingData) -> Matrix:
    """Scores with gaps (a row without a model's score) filled by that model's mean."""
    scores = data.score_matrix()
    means = np.nan_to_num(np.nanmean(scores, axis=0)) if scores.size else np.zeros(0)
    filled: Matrix = np.where(np.isnan(scores), means, scores).astype(np.float32)
    return filled


def train_knn(data: TrainingData, options: dict[str, Any]) -> Artifact:
    opts = parse_options(options)
    if not data.models:
        raise ValueError("knn needs `scores`: no model has a score in every row")
    vectors = normalise(data.embeddings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # data without costs
        scores, per_1k = score_matrix(data), data.cost_per_1k()
    configs = opts.configs(len(data.rows))
    table: list[dict[str, Any]] = []
    if len(configs) > 1:
        costs = fill_costs(data.cost_matrix())
        table = tune(vectors, scores, costs, per_1k, configs)
        best = max(table, key=lambda entry: entry["score"])
        k, temperature = int(best["k"]), best["temperature"]
    else:
        k, temperature = configs[0]
    return Artifact(
        algorithm="knn",
        models=list(data.models),
        encoder=data.encoder,
        arrays={
            "embeddings": vectors.astype(np.float16),
            "scores": scores,
            "cost_per_1k": per_1k,
        },
        data_hash=data.data_hash,
        params=dict(options),
        extra={
            "k": k,
            "weights": "uniform" if temperature is None else "softmax",
            "temperature": temperature,
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
    vectors: Matrix, scores: Matrix, costs: Matrix, per_1k: Matrix, configs: list[Config]
) -> list[dict[str, Any]]:
    """Leave-one-out score of every (k, temperature) on the training rows."""
    index, sims = loo_neighbours(vectors, max(k for k, _ in configs))
    curves = []
    for k, temperature in configs:
        weights = neighbour_weights(sims[:, :k], temperature)
        predicted = np.einsum("nk,nkm->nm", weights, scores[index[:, :k]])
        if per_1k.any():
            grid = cost_weight_grid(predicted, per_1k, points=32)
            curve = sweep(partial(choices_at, predicted, per_1k), scores, costs, grid)
            curves.append([p.point for p in curve])
        else:
            curves.append([point_of(choices_at(predicted, per_1k, 0.0), scores, costs)])
    low, high = shared_axis(curves)
    return [
        {"k": k, "temperature": t, "score": round(aiq(curve, low, high), 6)}
        for (k, t), curve in zip(configs, curves, strict=True)
    ]
