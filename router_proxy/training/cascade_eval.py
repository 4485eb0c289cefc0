"""A trained cascade's quality-cost curve on held-out rows (``router-proxy eval``).

The knob is ``budget_per_1k``: one point per frontier entry of the artifact (thinned to
``points``; the knob that buys the entry outright, its margin added), or for a filled
artifact (whose knob mixes entries) one per hull entry and ``points`` knobs between. At each budget
every row gets the stages ``CascadeArtifact.stages`` gives its prompt's embedding (its
kind from the prompt alone: no row's ``task`` is read; its share of a filled budget from
a hash of the embedding), and
the cascade is replayed on the row's recorded responses (``cascade_sim.replay``): the
cost of every call made, discarded answers included; the score of the model whose answer
is returned; the number of calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from router_proxy.selection.cascade_artifact import CascadeArtifact, draws
from router_proxy.training.aiq import CurvePoint, Matrix
from router_proxy.training.cascade_sim import AnswerTable, Outcome, replay_rows, table_agreement

if TYPE_CHECKING:
    from router_proxy.training.evaluate import HeldOut


@dataclass(frozen=True)
class CascadeCurve:
    points: list[CurvePoint]  # cost_weight holds the budget (US$ per 1k queries)
    calls: list[float]  # mean calls per request at each point


def budgets_of(artifact: CascadeArtifact, points: int) -> list[float]:
    """The knobs that buy the frontier entries, at most ``points`` of them evenly spread;
    a filled artifact's knob is continuous: the hull entries' knobs and ``points`` knobs
    spread evenly (log scale) between the cheapest and the dearest."""
    if artifact.hull is not None:
        vertices = [artifact.knob_for(e) for e in artifact.hull]
        between = np.geomspace(max(vertices[0], 1e-9), vertices[-1], max(points, 2))
        return sorted({*vertices, *between.tolist()})
    entries = np.arange(len(artifact.frontier_cost))
    if len(entries) > points > 1:
        entries = np.unique(np.linspace(0, len(entries) - 1, points).round().astype(int))
    return [artifact.knob_for(int(e)) for e in entries]


def run_at(
    artifact: CascadeArtifact,
    kinds: np.ndarray,
    budget: float,
    test: HeldOut,
    table: AnswerTable,
    draw: np.ndarray | None = None,
) -> Outcome:
    """Every test row run through the stages its kind (and its ``draw``, the hash of its
    embedding: ``cascade_artifact.draws``) gets at ``budget``."""
    columns = test.columns(artifact.models)
    column = {m: int(c) for m, c in zip(artifact.models, columns, strict=True)}
    if draw is None:
        draw = np.ones(len(kinds))
    plans = [artifact.plan_of(int(k), budget, float(d)) for k, d in zip(kinds, draw, strict=True)]
    return replay_rows(plans, table_agreement(table), test.scores, test.costs, column)


def cascade_curve(
    directory: str | Path, vectors: Matrix, test: HeldOut, points: int = 48
) -> CascadeCurve:
    artifact = CascadeArtifact.load(directory)
    test.columns(artifact.models)  # a DatasetError naming the models the data lacks
    kinds = artifact.index.of_batch(vectors)
    draw = draws(vectors)
    table = AnswerTable(test.rows, artifact.code_similarity)
    curve: list[CurvePoint] = []
    calls: list[float] = []
    last: tuple[float, float] | None = None
    for budget in budgets_of(artifact, points):
        out = run_at(artifact, kinds, budget, test, table, draw)
        point = (float(out.cost.mean() * 1000.0), float(out.quality.mean()))
        if point != last:
            curve.append(CurvePoint(budget, *point))
            calls.append(float(out.calls.mean()))
        last = point
    return CascadeCurve(curve, calls)
