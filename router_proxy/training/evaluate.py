"""``router-proxy eval``: quality-cost curves of trained routers on held-out data.

Each router is served as the gateway would serve it: the selector class registered for
the artifact's algorithm, built from the artifact (candidates = the artifact's models),
with the encoder the artifact records. Every test row is routed at each cost weight of a
grid drawn from the predictions and the cost spread (0 up to the weight at which every
row goes to the cheapest model); a point is the mean score of the chosen models and the
mean recorded cost of those calls, in US$ per 1,000 queries. Rows lacking a model's cost
get that model's mean cost (0 for data without costs).

A cascade artifact (``algorithm: cascade``) is no selector: its knob is its budget, and
each point replays the stages it gives every row on the row's recorded responses, paying
every call (``training/cascade_eval.py``); its points carry ``budget_per_1k`` and
``calls_per_request`` instead of ``cost_weight``. No router's evaluation reads ``task``.

Selectors predict all rows at once (``predict_batch``). When a selector keeps
``LearnedSelector.rank``, the sweep applies that rule (float32 penalty, first of ties) to
the predictions, vectorised; a selector with its own ``rank`` is called row by row at
every weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import encoder_name
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.resources import BuildContext, Resources
from router_proxy.selection.artifact import ArtifactError, read_meta
from router_proxy.selection.cascade_artifact import ALGORITHM as CASCADE
from router_proxy.selection.learned import LearnedSelector
from router_proxy.selection.registry import SELECTORS
from router_proxy.training.aiq import (
    Baselines,
    Chooser,
    CurvePoint,
    Matrix,
    aiq,
    baselines,
    choices_at,
    cost_weight_grid,
    fill_costs,
    shared_axis,
    sweep,
)
from router_proxy.training.cascade_eval import cascade_curve
from router_proxy.training.data import embed_prompts
from router_proxy.training.dataset import DatasetError, RoutingRow, models_of, read_rows
from router_proxy.training.records import judge_by_consensus, labels_by_prompt

BACKENDS = ("static", "sentence-transformers")


def embeddings_config(encoder: str, model: str | None = None) -> EmbeddingsConfig:
    """The embeddings config that loads the encoder named ``encoder`` (an artifact's)."""
    for backend in BACKENDS:
        config = EmbeddingsConfig(backend=backend, model=model)
        if encoder_name(config) == encoder:
            return config
    hint = "" if model else "; pass the model folder it was trained with (--embeddings-model)"
    raise ArtifactError(f"cannot load encoder '{encoder}' (model {model or 'bundled'}){hint}")


def resources_for(encoder: str, model: str | None = None) -> Resources:
    return Resources(encoder=SharedEncoder(embeddings_config(encoder, model)))


def selector_from_artifact(
    directory: str | Path, resources: Resources, cost_weight: float = 0.0
) -> LearnedSelector:
    """The registered selector for the artifact in ``directory``, all its models as
    candidates, built as serving builds it (no config needed)."""
    meta = read_meta(directory)
    algorithm = str(meta.get("algorithm"))
    cls = SELECTORS.get(algorithm)
    if cls is None or not issubclass(cls, LearnedSelector):
        known = sorted(n for n, c in SELECTORS.items() if issubclass(c, LearnedSelector))
        raise ArtifactError(
            f"'{directory}' holds a '{algorithm}' artifact, and no learned selector of that "
            f"name is registered (known: {', '.join(known) or 'none'})"
        )
    params = cls.config_model.model_validate({"artifact": directory, "cost_weight": cost_weight})
    return cls.build(tuple(meta["models"]), params, BuildContext(resources))


@dataclass(frozen=True)
class HeldOut:
    rows: list[RoutingRow]
    models: list[str]  # models scored in every row
    scores: Matrix  # rows x models
    costs: Matrix  # rows x models, US$ per call, gaps filled
    judge_agreement: float | None = None  # consensus judge vs true labels, where known
    judge_labelled: int = 0  # (row, model) pairs with a true label

    @classmethod
    def read(cls, path: str | Path) -> HeldOut:
        rows = read_rows(path)
        models = models_of(rows)
        if not rows or not models:
            raise DatasetError(f"{path}: no rows, or no model scored in every row")
        scores = np.array([[r.scores[m] for m in models] for r in rows], dtype=np.float32)
        costs = np.array([[r.costs.get(m, np.nan) for m in models] for r in rows], np.float32)
        return cls(rows, models, scores, fill_costs(costs))

    @classmethod
    def by_consensus(cls, path: str | Path, labels: Sequence[str | Path] = ()) -> HeldOut:
        """Rows without labels (recorded traffic): consensus among the rows' responses is
        the judge (``training/records.py``); the judge's agreement with true labels, where
        the rows or ``labels`` files have them, is kept beside."""
        rows = read_rows(path)
        models = models_of(rows, "responses")
        if not rows or len(models) < 2:
            raise DatasetError(f"{path}: consensus needs two models answering every row")
        judged = judge_by_consensus(rows, models, labels_by_prompt(labels))
        costs = np.array([[r.costs.get(m, np.nan) for m in models] for r in rows], np.float32)
        scores = np.array(judged.scores, dtype=np.float32)
        return cls(rows, models, scores, fill_costs(costs), judged.agreement, judged.labelled)

    def columns(self, names: Sequence[str]) -> npt.NDArray[np.intp]:
        missing = [n for n in names if n not in self.models]
        if missing:
            raise DatasetError(f"the test data has no score in every row for {missing}")
        return np.array([self.models.index(n) for n in names], dtype=np.intp)


@dataclass(frozen=True)
class RouterCurve:
    name: str
    algorithm: str
    points: list[CurvePoint]
    aiq: float
    # What a point's ``cost_weight`` holds: a cascade's knob is its budget (US$ per 1k).
    knob: str = "cost_weight"
    calls: list[float] | None = None  # mean calls per request per point (cascades)


@dataclass(frozen=True)
class Evaluation:
    rows: int
    routers: list[RouterCurve]
    baselines: Baselines
    axis: tuple[float, float]  # the shared cost axis of AIQ (US$ per 1k queries)
    zero_router_aiq: float
    judge: str = "labels"  # or "consensus": the rows' answers' consensus scored them
    judge_agreement: float | None = None
    judge_labelled: int = 0

    def to_json(self) -> dict[str, Any]:
        def pair(point: tuple[float, float]) -> dict[str, float]:
            return {"cost_per_1k": round(point[0], 6), "quality": round(point[1], 6)}

        base = self.baselines
        best = base.best_single
        return {
            "routers": {r.name: _points(r) for r in self.routers},
            "baselines": {
                "rows": self.rows,
                "single": {m: pair(p) for m, p in base.single.items()},
                "best_single": {"model": best, **pair(base.single[best])},
                "random": pair(base.random),
                "oracle": pair(base.oracle),
                "zero_router": {
                    "aiq": round(self.zero_router_aiq, 6),
                    "cost_axis": [round(x, 6) for x in self.axis],
                },
            },
            "aiq": {r.name: round(r.aiq, 6) for r in self.routers},
            **self._judge_json(),
        }

    def _judge_json(self) -> dict[str, Any]:
        """Only for a consensus judge (a labelled evaluation reads as it always has)."""
        if self.judge == "labels":
            return {}
        return {
            "judge": {
                "kind": self.judge,
                "agreement_with_labels": self.judge_agreement,
                "labelled_pairs": self.judge_labelled,
            }
        }


def _points(router: RouterCurve) -> list[dict[str, float]]:
    out = []
    for i, p in enumerate(router.points):
        point = {"cost_per_1k": round(p.cost_per_1k, 6), "quality": round(p.quality, 6)}
        point[router.knob] = p.cost_weight
        if router.calls is not None:
            point["calls_per_request"] = round(router.calls[i], 4)
        out.append(point)
    return out


def _row_by_row(directory: str | Path, resources: Resources, vectors: Matrix) -> Chooser:
    def choose(cost_weight: float) -> npt.NDArray[np.intp]:
        selector = selector_from_artifact(directory, resources, cost_weight)
        order = selector.candidates
        return np.array([order.index(selector.rank(v)[0]) for v in vectors], dtype=np.intp)

    return choose


def router_curve(
    directory: str | Path,
    resources: Resources,
    vectors: Matrix,
    test: HeldOut,
    points: int = 48,
    progress: bool = True,
) -> list[CurvePoint]:
    """The router's quality-cost curve on ``test`` (``vectors``: its prompts' embeddings)."""
    selector = selector_from_artifact(directory, resources)
    columns = test.columns(selector.candidates)
    recorded = selector.artifact.arrays.get("cost_per_1k")
    per_1k = (
        recorded[selector.index].astype(np.float32)
        if recorded is not None
        else np.zeros(len(selector.candidates), dtype=np.float32)
    )
    predicted = np.asarray(selector.predict_batch(vectors), dtype=np.float32)[:, selector.index]
    grid = cost_weight_grid(predicted, per_1k, points)
    if type(selector).rank is LearnedSelector.rank:
        choose: Chooser = partial(choices_at, predicted, per_1k)
    else:
        choose = _row_by_row(directory, resources, vectors)
    return sweep(choose, test.scores[:, columns], test.costs[:, columns], grid)


def evaluate(
    routers: Sequence[str | Path],
    data: str | Path,
    *,
    points: int = 48,
    embeddings_model: str | None = None,
    progress: bool = True,
    judge: str = "labels",
    labels: Sequence[str | Path] = (),
) -> Evaluation:
    """Curves of ``routers`` (artifact directories) on ``data``, baselines, AIQ; scored by
    the rows' ``scores`` (``judge="labels"``) or by consensus among their responses."""
    test = HeldOut.read(data) if judge == "labels" else HeldOut.by_consensus(data, labels)
    prompts = [row.prompt for row in test.rows]
    shared: dict[str, Resources] = {}
    vectors: dict[str, Matrix] = {}
    named: list[tuple[str, str, list[CurvePoint]]] = []
    calls: dict[str, list[float]] = {}  # cascades: mean calls per request per point
    for directory in routers:
        meta = read_meta(directory)
        encoder = str(meta.get("encoder"))
        if encoder not in shared:
            shared[encoder] = resources_for(encoder, embeddings_model)
            vectors[encoder] = embed_prompts(
                prompts, shared[encoder].encoder.get(), progress=progress
            )
        name = _unique(Path(directory).resolve().name, [n for n, _, _ in named])
        if meta.get("algorithm") == CASCADE:
            found = cascade_curve(directory, vectors[encoder], test, points)
            curve, calls[name] = found.points, found.calls
        else:
            curve = router_curve(
                directory, shared[encoder], vectors[encoder], test, points, progress
            )
        named.append((name, str(meta.get("algorithm")), curve))
    base = baselines(test.models, test.scores, test.costs)
    singles = list(base.single.values())
    low, high = shared_axis([singles, *([p.point for p in c] for _, _, c in named)])
    curves = [
        RouterCurve(
            name,
            algorithm,
            curve,
            aiq([p.point for p in curve], low, high),
            knob="budget_per_1k" if name in calls else "cost_weight",
            calls=calls.get(name),
        )
        for name, algorithm, curve in named
    ]
    return Evaluation(
        len(test.rows),
        curves,
        base,
        (low, high),
        aiq(singles, low, high),
        judge,
        test.judge_agreement,
        test.judge_labelled,
    )


def _unique(name: str, taken: list[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}#{number}", number + 1
    return candidate
