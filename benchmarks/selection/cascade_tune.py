"""What each tuning idea for the trained cascade buys (issue 15's follow-up), by 5-fold CV
on RouterBench train, confirmed once on dev.

Every variant is judged at the budget knob set to exactly $1.50 and $2.50 per 1k (what
a user sets), not at the best of many sweep points: held-out quality and cost, every call
paid. CV: task-stratified 5 folds, seeds 0-2; each fold's plans are searched on the
other folds' rows and the held-out prompts' kinds recovered from their embeddings
(majority of the nearest training prompts), as serving does. Dev: searched on all of
train, replayed on dev.jsonl's recorded responses. The families are the trainer's
current choice (single, pair, triple, by its own CV).

Variants:

* ``one entry`` (before): the knob buys the dearest frontier entry whose train cost fits;
* ``fill, margin m``: the two hull entries around ``knob * (1 - m)`` mixed per prompt by a
  hash of its embedding (``selection/cascade_artifact.py``; the default is m = 0.02);
* ``sub-kinds a/b/c``: each task's prompts split into k-means clusters of their
  embeddings (ARC/MBPP/Winogrande clusters; fitted on each fold's training rows only),
  one plan per cluster;
* ``neighbours k``: the kind vote over the k nearest training prompts;
* ``code cascades, similarity t``: MBPP (the code kind) may use cascades too, two code
  answers agreeing when the Jaccard similarity of their token 3-grams reaches t (the
  gateway's default is 0.2; the trainer now picks t, or single models, by its own CV);
* ``+ majority of 3`` / ``+ tie-break``: new stop rules offered beside the current ones:
  three cheap models in parallel, answer on a 2-of-3 majority, else escalate; or a cheap
  pair, then on disagreement a third cheap model whose agreement with either decides,
  else escalate (sequential). Measured offline only: the gateway's stop rule is "all of
  the stage agree", and these would need a new one.

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python -m benchmarks.selection.cascade_tune

Writes results/cascade_tune.json beside this file (~40 s on 2 shared cores).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder
from router_proxy.selection.cascade_artifact import KindIndex, draws, fill, hull_entries
from router_proxy.training.cascade_search import Frontier, Outcomes, frontier, outcomes
from router_proxy.training.cascade_sim import AnswerTable, table_agreement
from router_proxy.training.cascade_train import Problem, folds_of, parse_options
from router_proxy.training.data import TrainingData, embed_prompts
from router_proxy.training.evaluate import HeldOut

HERE = Path(__file__).resolve().parent
BUDGETS = (1.5, 2.5)
SEEDS = (0, 1, 2)
FAMILIES = ("single", "pair", "triple")
CODE_SIMILARITIES = (0.2, 0.3, 0.4, 0.5)
Index = npt.NDArray[np.intp]
Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Variant:
    name: str
    fill: bool = True
    margin: float = 0.02
    clusters: tuple[int, int, int] = (1, 1, 1)  # per task, in kind order
    neighbours: int = 10
    rules: tuple[str, ...] = ()  # extra stop rules: "majority", "tiebreak"
    code_similarity: float | None = None  # code kinds get cascades, agreeing at this


VARIANTS = (
    Variant("one entry (before)", fill=False, margin=0.0),
    Variant("fill, margin 0", margin=0.0),
    Variant("fill, margin 0.02, code single models (before)"),
    Variant("code cascades, similarity 0.2", code_similarity=0.2),
    Variant("code cascades, similarity 0.3", code_similarity=0.3),
    Variant("code cascades, similarity 0.4 (trainer's CV choice)", code_similarity=0.4),
    Variant("code cascades, similarity 0.5", code_similarity=0.5),
    Variant("fill, margin 0.05", margin=0.05),
    Variant("sub-kinds 2/1/1", clusters=(2, 1, 1)),
    Variant("sub-kinds 1/1/2", clusters=(1, 1, 2)),
    Variant("sub-kinds 2/2/2", clusters=(2, 2, 2)),
    Variant("sub-kinds 3/1/3", clusters=(3, 1, 3)),
    Variant("neighbours 1", neighbours=1),
    Variant("neighbours 3", neighbours=3),
    Variant("neighbours 20", neighbours=20),
    Variant("+ majority of 3", rules=("majority",)),
    Variant("+ tie-break", rules=("tiebreak",)),
)


def kmeans(vectors: Matrix, k: int, seed: int = 0, rounds: int = 30) -> Index:
    """Spherical k-means (k-means++ start, seeded) of unit ``vectors``: each one's cluster."""
    if k <= 1 or len(vectors) <= k:
        return np.zeros(len(vectors), dtype=np.intp)
    rng = np.random.default_rng(seed)
    centres = [vectors[rng.integers(len(vectors))]]
    for _ in range(1, k):
        distance = np.min(1.0 - vectors @ np.array(centres).T, axis=1).clip(0)
        centres.append(vectors[rng.choice(len(vectors), p=distance / distance.sum())])
    means = np.array(centres)
    for _ in range(rounds):
        label = np.argmax(vectors @ means.T, axis=1)
        for j in range(k):
            if (label == j).any():
                total = vectors[label == j].sum(axis=0)
                means[j] = total / np.linalg.norm(total)
    out: Index = np.argmax(vectors @ means.T, axis=1)
    return out


def sub_kinds(
    problem: Problem, vectors: Matrix, rows: Index, clusters: tuple[int, ...]
) -> tuple[Index, list[int]]:
    """Kinds of ``rows`` split by k-means within each task; each sub-kind's task."""
    kinds = np.full(len(problem.kinds), -1, dtype=np.intp)
    parent: list[int] = []
    for task, k in enumerate(clusters):
        members = rows[problem.kinds[rows] == task]
        label = kmeans(vectors[members], k)
        for j in range(k):
            kinds[members[label == j]] = len(parent)
            parent.append(task)
    return kinds, parent


Agree = Callable[[tuple[str, ...], Index], npt.NDArray[np.bool_]]


def rule_outcomes(
    rules: tuple[str, ...],
    cheap: list[str],
    models: list[str],
    mean: npt.NDArray[np.floating],
    agree: Agree,
    scores: Matrix,
    costs: Matrix,
) -> tuple[list[tuple[Any, ...]], Matrix, Matrix]:
    """The extra stop rules' plans and their per-row quality and cost."""
    col = {m: i for i, m in enumerate(models)}
    rows = np.arange(scores.shape[0])
    s, c = scores, costs

    def ag(a: str, b: str) -> npt.NDArray[np.bool_]:
        return agree(tuple(sorted((a, b), key=lambda m: (-mean[col[m]], m))), rows)

    plans: list[tuple[Any, ...]] = []
    quality: list[npt.NDArray[np.floating]] = []
    cost: list[npt.NDArray[np.floating]] = []
    for trio in itertools.combinations(cheap, 3):
        a, b, x = sorted(trio, key=lambda m: (-mean[col[m]], m))
        for e in (m for m in models if m not in trio):
            ie = col[e]
            if "majority" in rules:
                ab, ax, bx = ag(a, b), ag(a, x), ag(b, x)
                some = ab | ax | bx
                plans.append(("majority", a, b, x, e))
                quality.append(
                    np.where(ab | ax, s[:, col[a]], np.where(bx, s[:, col[b]], s[:, ie]))
                )
                three = c[:, col[a]] + c[:, col[b]] + c[:, col[x]]
                cost.append(three + np.where(some, 0.0, c[:, ie]))
            if "tiebreak" in rules:
                for p, q, r in ((a, b, x), (a, x, b), (b, x, a)):
                    pq, pr, qr = ag(p, q), ag(p, r), ag(q, r)
                    decided = pq | pr | qr
                    plans.append(("tiebreak", p, q, r, e))
                    quality.append(
                        np.where(pq | pr, s[:, col[p]], np.where(qr, s[:, col[q]], s[:, ie]))
                    )
                    spent = c[:, col[p]] + c[:, col[q]] + np.where(pq, 0.0, c[:, col[r]])
                    cost.append(spent + np.where(decided, 0.0, c[:, ie]))
    n = scores.shape[0]
    q = np.array(quality, dtype=np.float32).reshape(-1, n)
    k = np.array(cost, dtype=np.float32).reshape(-1, n)
    return plans, q, k


def extend(found: Outcomes, plans: list[Any], quality: Matrix, cost: Matrix) -> Outcomes:
    calls = np.zeros_like(quality)  # not reported here
    return Outcomes(
        found.plans + plans,
        np.concatenate([found.quality, quality]),
        np.concatenate([found.cost, cost]),
        np.concatenate([found.calls, calls]),
    )


def at_knob(
    front: Frontier, kinds: Index, draw: npt.NDArray[np.float64], budget: float, v: Variant
) -> Index:
    """Each prompt's plan (index) with the knob at ``budget``."""
    if v.fill:
        mix = fill(front.cost, hull_entries(front.cost, front.quality), budget * (1 - v.margin))
        entry = np.where(draw < mix.share, mix.high, mix.low)
    else:
        entry = np.full(len(kinds), front.entry(budget))
    out: Index = front.policy[entry, kinds]
    return out


@dataclass
class Setting:
    problem: Problem
    vectors: Matrix  # train, unit
    found: Outcomes  # train rows
    dev_found: Outcomes  # dev rows, same plans
    dev_vectors: Matrix
    code: dict[float, tuple[Outcomes, Outcomes]]  # similarity: (train, dev), base plans
    code_cascades: bool = False  # whether the code kind may use the cascades


def allowed_of(setting: Setting, parent: list[int], extra: Index) -> list[Index]:
    plans = setting.found.plans
    singles = np.array([i for i, p in enumerate(plans) if len(p) == 1])
    base = np.array([i for i, p in enumerate(plans) if not isinstance(p[0], str)])
    code = base if setting.code_cascades else singles
    return [
        code if task in setting.problem.code_kinds else np.concatenate([base, extra])
        for task in parent
    ]


def judge(setting: Setting, v: Variant) -> dict[str, Any]:
    problem, vectors = setting.problem, setting.vectors
    found, dev_found = setting.found, setting.dev_found
    if v.code_similarity is not None:
        found, dev_found = setting.code[v.code_similarity]
        setting = Setting(problem, vectors, found, dev_found, setting.dev_vectors, {}, True)
    n_rule = sum(1 for p in found.plans if isinstance(p[0], str))
    extra = np.arange(len(found.plans) - n_rule, len(found.plans))
    if not v.rules:
        extra = extra[:0]
    elif v.rules != ("majority",) and v.rules != ("tiebreak",):
        raise ValueError(v.rules)
    else:
        extra = np.array([i for i in extra if found.plans[i][0] == v.rules[0]], dtype=np.intp)
    cv: dict[float, list[tuple[float, float]]] = {b: [] for b in BUDGETS}
    n = len(problem.kinds)
    for seed in SEEDS:
        fold = folds_of(problem.kinds, 5, seed)
        totals = {b: [0.0, 0.0] for b in BUDGETS}
        for f in range(5):
            fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            kinds, parent = sub_kinds(problem, vectors, fit, v.clusters)
            allowed = allowed_of(setting, parent, extra)
            front = frontier(found, kinds, allowed, fit)
            index = KindIndex(vectors[fit], kinds[fit].astype(np.int32), len(parent), v.neighbours)
            held_kinds, draw = index.of_batch(vectors[held]), draws(vectors[held])
            for b in BUDGETS:
                plan = at_knob(front, held_kinds, draw, b, v)
                totals[b][0] += float(found.cost[plan, held].sum()) * 1000.0 / n
                totals[b][1] += float(found.quality[plan, held].sum()) / n
        for b in BUDGETS:
            cv[b].append((totals[b][0], totals[b][1]))
    every = np.arange(n)
    kinds, parent = sub_kinds(problem, vectors, every, v.clusters)
    allowed = allowed_of(setting, parent, extra)
    front = frontier(found, kinds, allowed, every)
    index = KindIndex(vectors, kinds.astype(np.int32), len(parent), v.neighbours)
    dev_kinds, dev_draw = index.of_batch(setting.dev_vectors), draws(setting.dev_vectors)
    rows = np.arange(len(dev_kinds))
    out: dict[str, Any] = {"variant": v.name}
    for b in BUDGETS:
        qs = [q for _, q in cv[b]]
        out[f"cv_q@{b}"] = round(float(np.mean(qs)), 4)
        out[f"cv_q@{b}_range"] = [round(min(qs), 4), round(max(qs), 4)]
        out[f"cv_cost@{b}"] = round(float(np.mean([c for c, _ in cv[b]])), 3)
        plan = at_knob(front, dev_kinds, dev_draw, b, v)
        out[f"dev_q@{b}"] = round(float(dev_found.quality[plan, rows].mean()), 4)
        out[f"dev_cost@{b}"] = round(float(dev_found.cost[plan, rows].mean()) * 1000.0, 3)
    return out


def setting_of(data_dir: Path) -> Setting:
    encoder = build_encoder(EmbeddingsConfig())
    train = TrainingData.load([data_dir / "train.jsonl"], encoder, field="scores", progress=False)
    problem = Problem.of(train, parse_options({}))
    found, _ = problem.search_space(FAMILIES, False)
    dev = HeldOut.read(data_dir / "dev.jsonl")
    columns = dev.columns(train.models)
    dev_scores, dev_costs = dev.scores[:, columns], dev.costs[:, columns]
    dev_table = AnswerTable(dev.rows)
    dev_agree = table_agreement(dev_table)
    column = problem.column
    dev_found = outcomes(found.plans, dev_agree, dev_scores, dev_costs, column)
    mean = problem.scores.mean(axis=0)
    rules = ("majority", "tiebreak")
    plans, q, c = rule_outcomes(
        rules, problem.cheap, train.models, mean, problem.agree, problem.scores, problem.costs
    )
    _, dq, dc = rule_outcomes(
        rules, problem.cheap, train.models, mean, dev_agree, dev_scores, dev_costs
    )
    code = {}
    for similarity in CODE_SIMILARITIES:
        at, _ = problem.search_space(FAMILIES, True, similarity)
        dev_at = outcomes(
            at.plans,
            table_agreement(AnswerTable(dev.rows, similarity)),
            dev_scores,
            dev_costs,
            column,
        )
        code[similarity] = (at, dev_at)
    unit = train.embeddings / np.linalg.norm(train.embeddings, axis=1, keepdims=True)
    dev_vectors = embed_prompts([r.prompt for r in dev.rows], encoder, progress=False)
    return Setting(
        problem,
        unit.astype(np.float32),
        extend(found, plans, q, c),
        extend(dev_found, plans, dq, dc),
        dev_vectors,
        code,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/work/shared/data", help="holds routerbench/")
    args = parser.parse_args()
    setting = setting_of(Path(args.data) / "routerbench")
    table = []
    head = f"{'variant':<28}" + "".join(
        f" | CV q@${b} (range) cost | dev q@${b} cost" for b in BUDGETS
    )
    print(head)
    for variant in VARIANTS:
        row = judge(setting, variant)
        table.append(row)
        cells = "".join(
            f" | {row[f'cv_q@{b}']:.4f} ({row[f'cv_q@{b}_range'][0]:.4f}-"
            f"{row[f'cv_q@{b}_range'][1]:.4f}) ${row[f'cv_cost@{b}']:.3f}"
            f" | {row[f'dev_q@{b}']:.4f} ${row[f'dev_cost@{b}']:.3f}"
            for b in BUDGETS
        )
        print(f"{variant.name:<28}{cells}", flush=True)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "cascade_tune.json").write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {results / 'cascade_tune.json'}")


if __name__ == "__main__":
    main()
