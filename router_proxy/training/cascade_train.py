"""``router-proxy train --algorithm cascade``: the artifact ``CascadeArtifact`` serves.

From wide rows (``responses``, ``scores``, ``costs``) every candidate plan
(``training/cascade_search.py``) is replayed on every training row exactly as the gateway
would run it (``training/cascade_sim.py``: every call's cost counted, discarded answers
included; the returned answer's score is its model's). Plans are chosen per kind of
prompt: the trainer learns kinds from the rows' ``task`` labels (``kinds: task``, the
default when every row has one; ``one``: one kind for all prompts), and the artifact
recovers a prompt's kind from its embedding alone (majority of its nearest training
prompts), so serving and ``eval`` never read a label.

Which candidate families to search is chosen by task-stratified k-fold cross-validation
on the training rows (AIQ of the held-out curve over a grid of budgets): more families
fit the training rows better but choose among more plans on the same few hundred rows.
The artifact is then searched on all training rows with the chosen families.

Kinds whose answers are code: code agreement is a similarity grouping
(``answers/extract.py``: Jaccard of token 3-grams), so whether they get cascades, and at
which similarity two programs agree, is chosen by the same cross-validation once the
families are chosen (``choose_code``); the artifact records the similarity
(``extra.code_similarity``) and the gateway's ``stop: agree`` groups code with it.

Options (``--option key=value``): ``families`` (``auto`` or a comma list of
``single,pair,triple,pair2``), ``kinds`` (``task``/``one``), ``neighbours`` (10),
``stage_cost_share`` (0.25: models in agreement stages cost at most this share of the
dearest model's mean), ``code_cascades`` (``auto``/true/false), ``code_similarity``
(``auto``: one of ``CODE_GRID`` by CV, or a number in (0, 1]), ``folds`` (5), ``seed`` (0),
``fill`` (true: a knob between two hull entries mixes them by a hash of the prompt's
embedding so the expected cost meets it, ``selection/cascade_artifact.py``),
``budget_margin`` (0.02: the share of the knob kept back when filling, so that training
cost <= budget still holds on new prompts; 2% kept the held-out cost under the knob at
$1.50 and $2.50 in every fold of 5-fold CV on RouterBench train, seeds 0-2, where 0% went
over by ~1%).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from router_proxy.selection.artifact import Artifact
from router_proxy.selection.cascade_artifact import (
    ALGORITHM,
    KindIndex,
    Mix,
    draws,
    encode,
    fill,
    hull_entries,
)
from router_proxy.training.aiq import aiq, fill_costs, shared_axis
from router_proxy.training.answers import CODE_SIMILARITY, task_formats
from router_proxy.training.cascade_search import (
    FAMILIES,
    Frontier,
    Outcomes,
    candidates,
    frontier,
    outcomes,
)
from router_proxy.training.cascade_sim import AnswerTable, Stages
from router_proxy.training.data import TrainingData
from router_proxy.training.extra import require_tqdm
from router_proxy.training.knn_train import score_matrix

AUTO_FAMILIES = (
    ("single",),
    ("single", "pair"),
    ("single", "pair", "triple"),
    ("single", "pair", "triple", "quad"),
    ("single", "pair", "triple", "pair2"),
)
BUDGETS = 48  # budget grid of the cross-validation curves
# Code similarities tried for code kinds' cascades (Jaccard of token 3-grams; 0.2 is the
# gateway's default). On RouterBench train 0.3-0.5 beat single models in CV, 0.2 did not.
CODE_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


@dataclass(frozen=True)
class CascadeOptions:
    families: tuple[str, ...] | None  # None: chosen by cross-validation
    kinds: str
    neighbours: int
    stage_cost_share: float
    code_cascades: bool | None  # None: chosen by cross-validation
    folds: int
    seed: int
    fill: bool = True
    budget_margin: float = 0.02
    code_similarity: float | None = None  # None: chosen by cross-validation (CODE_GRID)
    progress: bool = True  # a bar over the search's cross-validated choices


def parse_options(options: dict[str, Any]) -> CascadeOptions:
    known = {
        "families",
        "kinds",
        "neighbours",
        "stage_cost_share",
        "code_cascades",
        "folds",
        "seed",
        "fill",
        "budget_margin",
        "code_similarity",
        "progress",
    }
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"cascade: unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
    raw = options.get("families", "auto")
    families = None
    if raw != "auto":
        families = tuple(f.strip() for f in str(raw).split(",") if f.strip())
        bad = [f for f in families if f not in FAMILIES]
        if bad or "single" not in families:
            raise ValueError(
                f"cascade: families must be 'auto' or a comma list of {', '.join(FAMILIES)} "
                f"including single, not {raw!r}"
            )
    kinds = options.get("kinds", "task")
    if kinds not in ("task", "one"):
        raise ValueError(f"cascade: kinds must be 'task' or 'one', not {kinds!r}")
    values = {
        "neighbours": options.get("neighbours", 10),
        "folds": options.get("folds", 5),
        "seed": options.get("seed", 0),
    }
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (name != "seed"):
            raise ValueError(f"cascade: {name} must be a positive integer, not {value!r}")
    share = options.get("stage_cost_share", 0.25)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise ValueError(f"cascade: stage_cost_share must be in (0, 1], not {share!r}")
    code = options.get("code_cascades", "auto")
    if not isinstance(code, bool) and code != "auto":
        raise ValueError(f"cascade: code_cascades must be true, false or auto, not {code!r}")
    similarity = options.get("code_similarity", "auto")
    if similarity != "auto" and (
        isinstance(similarity, bool)
        or not isinstance(similarity, int | float)
        or not 0 < similarity <= 1
    ):
        raise ValueError(f"cascade: code_similarity must be auto or in (0, 1], not {similarity!r}")
    filled = options.get("fill", True)
    if not isinstance(filled, bool):
        raise ValueError(f"cascade: fill must be true or false, not {filled!r}")
    margin = options.get("budget_margin", 0.02)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1:
        raise ValueError(f"cascade: budget_margin must be in [0, 1), not {margin!r}")
    progress = options.get("progress", True)
    if not isinstance(progress, bool):
        raise ValueError(f"cascade: progress must be true or false, not {progress!r}")
    return CascadeOptions(
        families,
        str(kinds),
        values["neighbours"],
        float(share),
        None if code == "auto" else bool(code),
        max(values["folds"], 2),
        values["seed"],
        filled,
        float(margin),
        None if similarity == "auto" else float(similarity),
        progress,
    )


@dataclass
class Problem:
    """The training rows in the search's terms."""

    data: TrainingData
    scores: npt.NDArray[np.float32]  # rows x models
    costs: npt.NDArray[np.float32]  # rows x models, US$ per call
    kind_names: list[str]
    kinds: npt.NDArray[np.intp]  # each row's kind (from its label)
    code_kinds: set[int]
    cheap: list[str]
    table: AnswerTable
    _agreement: dict[tuple[tuple[str, ...], float | None], npt.NDArray[np.bool_]]

    @classmethod
    def of(cls, data: TrainingData, opts: CascadeOptions) -> Problem:
        scores = score_matrix(data)
        costs = fill_costs(data.cost_matrix())
        labels = [r.task for r in data.rows]
        if opts.kinds == "one" or not all(labels):
            labels = [""] * len(data.rows)
        names = sorted(set(labels))
        kinds = np.array([names.index(t) for t in labels], dtype=np.intp)
        formats = task_formats(data.rows)  # the trainer may use labels
        code = {
            k
            for k in range(len(names))
            if sum(f == "code" for f, g in zip(formats, kinds, strict=True) if g == k) * 2
            > int((kinds == k).sum())
        }
        per_1k = costs.mean(axis=0) * 1000.0
        limit = opts.stage_cost_share * float(per_1k.max())
        cheap = [m for m, c in zip(data.models, per_1k, strict=True) if c <= limit]
        table = AnswerTable(data.rows)
        return cls(data, scores, costs, names, kinds, code, cheap, table, {})

    @property
    def column(self) -> dict[str, int]:
        return {m: i for i, m in enumerate(self.data.models)}

    def agree(
        self, stage: tuple[str, ...], rows: npt.NDArray[np.intp], similarity: float | None = None
    ) -> npt.NDArray[np.bool_]:
        """The stage's agreement on ``rows``, code compared at ``similarity`` (None: the
        gateway's default); only rows whose answers are code are compared again."""
        if (stage, None) not in self._agreement:
            every = range(len(self.data.rows))
            self._agreement[(stage, None)] = np.array([self.table.agrees(r, stage) for r in every])
        key = (stage, similarity)
        if key not in self._agreement:
            found = self._agreement[(stage, None)].copy()
            code = [r for r in range(len(found)) if self.table.is_code(r, stage)]
            found[code] = [self.table.agrees(r, stage, similarity) for r in code]
            self._agreement[key] = found
        return self._agreement[key][rows]

    def search_space(
        self, families: Sequence[str], code_cascades: bool, similarity: float | None = None
    ) -> tuple[Outcomes, list[npt.NDArray[np.intp]]]:
        """Every plan of ``families`` replayed with code answers grouped at
        ``similarity``; code kinds may use cascades only with ``code_cascades``."""
        plans = candidates(self.data.models, self.scores.mean(axis=0), families, self.cheap)

        def agree(stage: tuple[str, ...], rows: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
            return self.agree(stage, rows, similarity)

        found = outcomes(plans, agree, self.scores, self.costs, self.column)
        everything = np.arange(len(plans))
        singles = np.array([i for i, p in enumerate(plans) if len(p) == 1], dtype=np.intp)
        allowed = [
            singles if k in self.code_kinds and not code_cascades else everything
            for k in range(len(self.kind_names))
        ]
        return found, allowed


def folds_of(kinds: npt.NDArray[np.intp], folds: int, seed: int) -> npt.NDArray[np.intp]:
    """Each row's fold, stratified by kind (seeded)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(kinds), dtype=np.intp)
    for kind in np.unique(kinds):
        members = np.flatnonzero(kinds == kind)
        rng.shuffle(members)
        out[members] = np.arange(len(members)) % folds
    return out


def cross_validate(
    problem: Problem,
    found: Outcomes,
    allowed: list[npt.NDArray[np.intp]],
    opts: CascadeOptions,
    budgets: npt.NDArray[np.float64],
) -> list[tuple[float, float]]:
    """The held-out curve: per budget, the mean over all rows of each row's outcome under
    the plan chosen without its fold, its kind recovered from its embedding by the fold's
    training prompts (as serving will)."""
    fold = folds_of(problem.kinds, opts.folds, opts.seed)
    vectors = problem.data.embeddings
    n = len(fold)
    cost = np.zeros(len(budgets))
    quality = np.zeros(len(budgets))
    for f in range(opts.folds):
        fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if not len(held) or not len(fit):
            continue
        front = frontier(found, problem.kinds, allowed, fit)
        index = KindIndex(
            vectors[fit], problem.kinds[fit].astype(np.int32), len(allowed), opts.neighbours
        )
        kinds = index.of_batch(vectors[held])
        draw = draws(vectors[held])
        hull = hull_entries(front.cost, front.quality)
        for b, budget in enumerate(budgets):
            mix = knob(front, hull, float(budget), opts)
            plan = front.policy[np.where(draw < mix.share, mix.high, mix.low), kinds]
            cost[b] += found.cost[plan, held].sum() * 1000.0 / n
            quality[b] += found.quality[plan, held].sum() / n
    return list(zip(cost.tolist(), quality.tolist(), strict=True))


def knob(front: Frontier, hull: list[int], budget: float, opts: CascadeOptions) -> Mix:
    """The entries ``budget`` buys, as the artifact will choose them."""
    if opts.fill:
        return fill(front.cost, hull, budget * (1.0 - opts.budget_margin))
    one = front.entry(budget)
    return Mix(one, one, 0.0)


def train_cascade(data: TrainingData, options: dict[str, Any]) -> Artifact:
    opts = parse_options(options)
    if not data.models:
        raise ValueError("cascade needs `scores`: no model has a score in every row")
    problem = Problem.of(data, opts)
    choices = [opts.families] if opts.families else list(AUTO_FAMILIES)
    per_1k = problem.costs.mean(axis=0) * 1000.0
    budgets = np.geomspace(max(float(per_1k.min()), 1e-6), 3.0 * float(per_1k.max()), BUDGETS)
    searched = {}
    curves = {}
    # One step per choice cross-validated: plan families, then how code kinds are served.
    steps = (len(choices) if len(choices) > 1 else 0) + len(code_options(problem, opts))
    tqdm = require_tqdm("cascade training")
    bar = tqdm(total=steps, desc="cascade search", unit="choice", disable=not opts.progress)
    for families in choices:
        bar.set_postfix_str(",".join(families))
        found, allowed = problem.search_space(
            families, opts.code_cascades is True, opts.code_similarity
        )
        searched[families] = (found, allowed)
        if len(choices) > 1:
            curves[families] = cross_validate(problem, found, allowed, opts, budgets)
            bar.update()
    table: list[dict[str, Any]] = []
    if curves:
        low, high = shared_axis(curves.values())
        scored = {f: aiq(c, low, high) for f, c in curves.items()}
        best = max(scored, key=lambda f: (round(scored[f], 4), -len(f)))
        table = [
            {"families": ",".join(f), "cv_aiq": round(s, 6), "cv_curve": _rounded(curves[f])}
            for f, s in scored.items()
        ]
    else:
        best = choices[0]
    found, allowed = searched[best]
    bar.set_postfix_str("code kinds")
    code = choose_code(problem, best, opts, budgets, (found, allowed), bar.update)
    bar.close()
    found, allowed = code.space
    front = frontier(found, problem.kinds, allowed, np.arange(len(data.rows)))
    return _artifact(data, problem, found, front, opts, best, table, code)


@dataclass(frozen=True)
class CodeChoice:
    """How code kinds are served: cascades or not, and the similarity at which two code
    answers agree (the gateway's ``stop: agree`` reads it from the artifact)."""

    cascades: bool
    similarity: float
    space: tuple[Outcomes, list[npt.NDArray[np.intp]]]
    table: list[dict[str, Any]]


def choose_code(
    problem: Problem,
    families: tuple[str, ...],
    opts: CascadeOptions,
    budgets: npt.NDArray[np.float64],
    searched: tuple[Outcomes, list[npt.NDArray[np.intp]]],
    done: Callable[[], object] = lambda: None,
) -> CodeChoice:
    """Single models for code kinds, or cascades at one of ``CODE_GRID``'s similarities
    (or the options' own), by the same cross-validation as the families (ties: fewer
    calls). The threshold matters because code agreement is a similarity grouping: at the
    gateway's default 0.2, unlike programs agree too often for a cascade to pay."""
    default = opts.code_similarity if opts.code_similarity is not None else CODE_SIMILARITY
    if not problem.code_kinds or opts.code_cascades is False:
        return CodeChoice(False, default, searched, [])
    options = code_options(problem, opts) or [(True, default)]

    def space(cascades: bool, similarity: float) -> tuple[Outcomes, list[npt.NDArray[np.intp]]]:
        if not cascades and similarity == default:
            return searched  # the families' own search: code kinds on single models
        return problem.search_space(families, cascades, similarity)

    if len(options) == 1:
        (cascades, similarity) = options[0]
        return CodeChoice(cascades, similarity, space(cascades, similarity), [])
    spaces, curves = {}, {}
    for option in options:  # one at a time: the progress bar moves with each
        spaces[option] = space(*option)
        curves[option] = cross_validate(problem, *spaces[option], opts, budgets)
        done()
    low, high = shared_axis(curves.values())
    scored = {o: aiq(c, low, high) for o, c in curves.items()}
    best = max(options, key=lambda o: round(scored[o], 4))  # the first of equals
    table = [
        {
            "code_cascades": o[0],
            "code_similarity": o[1],
            "cv_aiq": round(scored[o], 6),
            "cv_curve": _rounded(curves[o]),
        }
        for o in options
    ]
    return CodeChoice(best[0], best[1], spaces[best], table)


def code_options(problem: Problem, opts: CascadeOptions) -> list[tuple[bool, float]]:
    """The ways of serving code kinds cross-validated against each other, as (cascades,
    similarity); empty when there is nothing to choose."""
    if not problem.code_kinds or opts.code_cascades is False:
        return []
    default = opts.code_similarity if opts.code_similarity is not None else CODE_SIMILARITY
    grid = (opts.code_similarity,) if opts.code_similarity is not None else CODE_GRID
    options: list[tuple[bool, float]] = [(True, t) for t in grid]
    if opts.code_cascades is None:
        options.insert(0, (False, default))
    return options if len(options) > 1 else []


def _rounded(points: list[tuple[float, float]]) -> list[list[float]]:
    return [[round(c, 6), round(q, 6)] for c, q in points]


def _artifact(
    data: TrainingData,
    problem: Problem,
    found: Outcomes,
    front: Frontier,
    opts: CascadeOptions,
    families: tuple[str, ...],
    table: list[dict[str, Any]],
    code: CodeChoice,
) -> Artifact:
    used = sorted(set(front.policy.ravel().tolist()))
    renumber = {old: new for new, old in enumerate(used)}
    plans: list[Stages] = [found.plans[i] for i in used]
    policy = np.vectorize(renumber.__getitem__, otypes=[np.int32])(front.policy)
    norms = np.linalg.norm(data.embeddings, axis=1, keepdims=True)
    unit = data.embeddings / np.where(norms > 0, norms, 1.0)
    return Artifact(
        algorithm=ALGORITHM,
        models=list(data.models),
        encoder=data.encoder,
        arrays={
            "embeddings": unit.astype(np.float16),
            "row_kinds": problem.kinds.astype(np.int32),
            "policies": encode(plans, data.models),
            "frontier_cost": front.cost,
            "frontier_quality": front.quality,
            "frontier_policy": policy,
            "cost_per_1k": (problem.costs.mean(axis=0) * 1000.0).astype(np.float32),
        },
        data_hash=data.data_hash,
        params=data_params(opts),
        extra={
            "kinds": problem.kind_names,
            "code_kinds": sorted(problem.kind_names[k] for k in problem.code_kinds),
            "code_cascades": code.cascades,
            "code_similarity": code.similarity,
            "code_tuning": code.table,
            "neighbours": opts.neighbours,
            "fill": opts.fill,
            "budget_margin": opts.budget_margin if opts.fill else 0.0,
            "families": ",".join(families),
            "stage_models": problem.cheap,
            "prompts": len(data.rows),
            "entries": len(front.cost),
            "tuning": table,
        },
    )


def data_params(opts: CascadeOptions) -> dict[str, Any]:
    return {
        "families": ",".join(opts.families) if opts.families else "auto",
        "kinds": opts.kinds,
        "neighbours": opts.neighbours,
        "stage_cost_share": opts.stage_cost_share,
        "code_cascades": "auto" if opts.code_cascades is None else opts.code_cascades,
        "code_similarity": "auto" if opts.code_similarity is None else opts.code_similarity,
        "folds": opts.folds,
        "seed": opts.seed,
        "fill": opts.fill,
        "budget_margin": opts.budget_margin,
    }
