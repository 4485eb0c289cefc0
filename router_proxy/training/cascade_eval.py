"""A trained cascade's quality-cost curve on held-out rows (``router-proxy eval``).

The knob is ``budget_per_1k``: one point per frontier entry of the artifact (thinned to
``points``). At each budget every row gets the stages ``CascadeArtifact.stages`` gives
its prompt's embedding (its kind from the prompt alone: no row's ``task`` is read), and
the cascade is replayed on the row's recorded responses (``cascade_sim.replay``): the
cost of every call made, discarded answers included; the score of the model whose answer
is returned; the number of calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from router_proxy.selection.cascade_artifact import CascadeArtifact
from router_proxy.training.aiq import CurvePoint, Matrix
from router_proxy.training.cascade_sim import AnswerTable, Outcome, replay_rows, table_agreement

if TYPE_CHECKING:
    from router_proxy.training.evaluate import HeldOut


@dataclass(frozen=True)
class CascadeCurve:
    points: list[CurvePoint]  # cost_weight holds the budget (US$ per 1k queries)
    calls: list[float]  # mean calls per request at each point


def budgets_of(artifact: CascadeArtifact, points: int) -> list[float]:
    """The frontier entries' training costs, at most ``points`` of them evenly spread."""
    costs = artifact.frontier_cost
    if len(costs) > points > 1:
        costs = costs[np.unique(np.linspace(0, len(costs) - 1, points).round().astype(int))]
    return [float(c) for c in costs]


def run_at(
    artifact: CascadeArtifact, kinds: np.ndarray, budget: float, test: HeldOut, table: AnswerTable
) -> Outcome:
    """Every test row run through the stages its kind gets at ``budget``."""
    columns = test.columns(artifact.models)
    column = {m: int(c) for m, c in zip(artifact.models, columns, strict=True)}
    plans = [artifact.plan_of(int(k), budget) for k in kinds]
    return replay_rows(plans, table_agreement(table), test.scores, test.costs, column)


def cascade_curve(
    directory: str | Path, vectors: Matrix, test: HeldOut, points: int = 48
) -> CascadeCurve:
    artifact = CascadeArtifact.load(directory)
    test.columns(artifact.models)  # a DatasetError naming the models the data lacks
    kinds = artifact.index.of_batch(vectors)
    table = AnswerTable(test.rows)
    curve: list[CurvePoint] = []
    calls: list[float] = []
    last: tuple[float, float] | None = None
    for budget in budgets_of(artifact, points):
        out = run_at(artifact, kinds, budget, test, table)
        point = (float(out.cost.mean() * 1000.0), float(out.quality.mean()))
        if point != last:
            curve.append(CurvePoint(budget, *point))
            calls.append(float(out.calls.mean()))
        last = point
    return CascadeCurve(curve, calls)
