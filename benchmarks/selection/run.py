"""Learned selection on real routing data: the kNN router against the baselines.

RouterBench (11 models, with costs): k and the weighting are tuned on a task-stratified
20% validation split carved from train.jsonl (never dev); the chosen setting is trained on
all of train.jsonl and evaluated on dev.jsonl with ``router-proxy eval``'s code (curve,
AIQ, baselines), next to RouterBench's own setting (k=50, plain mean) and the trainer's
``k=auto`` (leave-one-out on train). Then: training time, and selection latency (``rank``
on a ready embedding, the work after the encoder) and the embedding itself per prompt.

open7 (7 open models, no costs): a task-stratified 20% of train.jsonl is held out (seed
0); tuning uses a validation split of the remaining 80%; the router trained on that 80%
is compared with the best single model on the held-out rows.

    .venv/bin/python -m benchmarks.selection.run [--data /work/shared/data] [--no-plot]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder
from router_proxy.selection.knn import KnnIndex, KnnSelector
from router_proxy.selection.registry import SELECTORS
from router_proxy.training.aiq import (
    Point,
    aiq,
    baselines,
    best_under,
    choices_at,
    cost_weight_grid,
    fill_costs,
    hull_at,
    shared_axis,
    sweep,
)
from router_proxy.training.data import TrainingData, stratified_holdout
from router_proxy.training.dataset import RoutingRow, read_rows
from router_proxy.training.evaluate import Evaluation, evaluate, selector_from_artifact
from router_proxy.training.knn_train import SHRINKS, score_matrix, train_knn
from router_proxy.training.registry import TRAINERS

RESULTS = Path(__file__).resolve().parent / "results"
GRID = [
    (k, t, s)
    for k in (5, 10, 20, 50, 100, 200, 400)
    for t in (None, 0.2, 0.1, 0.05, 0.02)
    for s in SHRINKS
]
BUDGETS = (2.50, 0.50)  # targets: >= 0.87 at <= $2.50, >= 0.83 at <= $0.50
TARGETS = {2.50: 0.87, 0.50: 0.83}


def label(k: int, temperature: float | None, shrink: float) -> str:
    weights = "uniform" if temperature is None else f"softmax t={temperature}"
    return f"k={k} {weights} shrink={shrink}"


def validate(data: TrainingData, val: np.ndarray) -> list[dict[str, Any]]:
    """Every (k, weighting) trained on ~val and scored on val: AIQ (or quality, no costs)."""
    fit, held = data.subset(~val), data.subset(val)
    scores, costs = score_matrix(held), fill_costs(held.cost_matrix())
    per_1k = fit.cost_per_1k()
    curves = []
    for k, temperature, shrink in GRID:
        options = options_of({"k": k, "temperature": temperature, "shrink": shrink})
        index = KnnIndex.from_artifact(train_knn(fit, options))
        predicted = index.predict_batch(held.embeddings)
        grid = cost_weight_grid(predicted, per_1k, points=48)
        curve = sweep(partial(choices_at, predicted, per_1k), scores, costs, grid)
        curves.append([p.point for p in curve])
    singles = list(baselines(held.models, scores, costs).single.values())
    low, high = shared_axis([singles, *curves])
    return [
        {
            "k": k,
            "temperature": t,
            "shrink": s,
            "score": aiq(curve, low, high),
            **{f"at_{b}": best_under(curve, b) for b in BUDGETS},
        }
        for (k, t, s), curve in zip(GRID, curves, strict=True)
    ]


def train_to(data: TrainingData, options: dict[str, Any], out: Path) -> tuple[Path, float]:
    started = time.perf_counter()
    artifact = train_knn(data, options)
    seconds = time.perf_counter() - started
    return artifact.save(out), seconds


def options_of(best: dict[str, Any]) -> dict[str, Any]:
    if best["temperature"] is None:
        return {"k": best["k"], "weights": "uniform", "shrink": best["shrink"]}
    return {"k": best["k"], "temperature": best["temperature"], "shrink": best["shrink"]}


def auto_choice(artifact: Path) -> dict[str, Any]:
    extra = json.loads((artifact / "meta.json").read_text())["extra"]
    return {key: extra[key] for key in ("k", "weights", "temperature", "shrink")}


def latency(artifact: Path, encoder: Encoder, prompts: list[str]) -> dict[str, float]:
    """Per-prompt ms: ``rank`` on a ready embedding (p50, p99), and the embedding (p50)."""
    from router_proxy.training.evaluate import resources_for

    selector = selector_from_artifact(artifact, resources_for(encoder.name), cost_weight=0.02)
    vectors = encoder.encode(prompts)
    ranks, embeds = [], []
    for _ in range(5):
        for vector in vectors:
            started = time.perf_counter()
            selector.rank(vector)
            ranks.append(time.perf_counter() - started)
    for prompt in prompts[:200]:
        started = time.perf_counter()
        encoder.encode([prompt])
        embeds.append(time.perf_counter() - started)
    return {
        "rank_p50_ms": statistics.median(ranks) * 1000,
        "rank_p99_ms": float(np.percentile(ranks, 99)) * 1000,
        "embed_p50_ms": statistics.median(embeds) * 1000,
    }


def print_validation(title: str, table: list[dict[str, Any]], metric: str) -> None:
    print(f"\n{title}: validation split of train ({metric}), best 8 of {len(table)}")
    for entry in sorted(table, key=lambda e: -e["score"])[:8]:
        extra = "".join(f"  q@${b:.2f} {entry[f'at_{b}']:.4f}" for b in BUDGETS)
        print(
            f"  {label(entry['k'], entry['temperature'], entry['shrink']):<36} {entry['score']:.4f}"
            + (extra if metric == "AIQ" else "")
        )


def task_means(train: Sequence[RoutingRow]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per task of ``train``: each model's mean score and mean $ per 1,000 queries (0 where
    the data has no costs), models in the order of the first row's scores."""
    models = list(train[0].scores)
    by_task: dict[str, list[RoutingRow]] = defaultdict(list)
    for row in train:
        by_task[row.task].append(row)
    return {
        task: (
            np.mean([[r.scores[m] for m in models] for r in rows], axis=0),
            np.mean([[r.costs.get(m, 0.0) for m in models] for r in rows], axis=0) * 1000,
        )
        for task, rows in by_task.items()
    }


def task_router(train: Sequence[RoutingRow], test: Sequence[RoutingRow]) -> list[Point]:
    """Reference: route each test row by its task label alone (train's per-task means of
    score and cost), swept over the cost weight. What a perfect task classifier reaches."""
    models, means = list(train[0].scores), task_means(train)
    points = []
    for weight in [0.0, *np.geomspace(1e-4, 3, 300)]:
        picks = [models[int(np.argmax(means[r.task][0] - weight * means[r.task][1]))] for r in test]
        points.append(
            (
                float(np.mean([r.costs[m] for r, m in zip(test, picks, strict=True)]) * 1000),
                float(np.mean([r.scores[m] for r, m in zip(test, picks, strict=True)])),
            )
        )
    return points


def print_curve(result: Evaluation) -> None:
    base = result.baselines
    print(f"\n{result.rows} dev rows; AIQ axis ${result.axis[0]:.3f}-${result.axis[1]:.3f}")
    for router in result.routers:
        print(f"  {router.name}: AIQ {router.aiq:.4f}")
        for p in router.points:
            print(f"    w={p.cost_weight:<10.4g} quality {p.quality:.4f}  ${p.cost_per_1k:.3f}/1k")
    print(f"  zero router AIQ {result.zero_router_aiq:.4f}")
    best = base.single[base.best_single]
    print(f"  best single {base.best_single}: {best[1]:.4f} at ${best[0]:.3f}")
    print(f"  random {base.random[1]:.4f} at ${base.random[0]:.3f}")
    print(f"  oracle {base.oracle[1]:.4f} at ${base.oracle[0]:.3f}")


def routerbench(root: Path, encoder: Encoder, work: Path, plot: bool) -> dict[str, Any]:
    train_path, dev_path = root / "routerbench" / "train.jsonl", root / "routerbench" / "dev.jsonl"
    data = TrainingData.load([train_path], encoder, progress=False)
    table = validate(data, stratified_holdout([r.task for r in data.rows], 0.2, seed=0))
    print_validation("RouterBench", table, "AIQ")
    best = max(table, key=lambda e: e["score"])
    setups = {
        "knn": {},  # the trainer's default: k, temperature, shrink by leave-one-out on train
        "knn-noshrink": {"shrink": 0},  # the same without the group prior (before shrink)
        "knn-valsplit": options_of(best),  # picked on the 80/20 split of train above
        "knn-rb-k50": {"k": 50, "weights": "uniform", "shrink": 0},  # RouterBench's own
    }
    trained = {name: train_to(data, options, work / name) for name, options in setups.items()}
    result = evaluate([path for path, _ in trained.values()], dev_path, progress=False)
    print_curve(result)
    checks = target_checks(result)
    reference = task_router(read_rows(train_path), read_rows(dev_path))
    ceiling = {
        budget: (best_under(reference, budget), hull_at(reference, budget)) for budget in BUDGETS
    }
    for budget, (got, mixed) in ceiling.items():
        print(f"  (task-label router <= ${budget:.2f}: {got:.4f}, hull {mixed:.4f})")
    speed = latency(trained["knn"][0], encoder, [r.prompt for r in read_rows(dev_path)])
    fixed, auto = trained["knn-valsplit"][1], trained["knn"][1]
    print(
        f"\ntraining {len(data.rows)} prompts (embeddings cached): fixed k {fixed * 1000:.0f} ms; "
        f"k=auto with its leave-one-out search {auto * 1000:.0f} ms"
    )
    print(
        f"selection: rank p50 {speed['rank_p50_ms']:.3f} ms, p99 {speed['rank_p99_ms']:.3f} "
        f"ms; embedding (static) p50 {speed['embed_p50_ms']:.2f} ms"
    )
    if plot:
        from router_proxy.training.plot import plot as draw

        RESULTS.mkdir(exist_ok=True)
        draw(result, RESULTS / "routerbench.png", "kNN routers on RouterBench dev (438 prompts)")
    return {
        "validation": table,
        "valsplit_choice": options_of(best),
        "auto_choice": auto_choice(trained["knn"][0]),
        "eval": result.to_json(),
        "targets": checks,
        "task_label_router": {str(b): {"quality": q, "hull": h} for b, (q, h) in ceiling.items()},
        "train_s": {name: seconds for name, (_, seconds) in trained.items()},
        "latency": speed,
    }


def target_checks(result: Evaluation) -> list[dict[str, Any]]:
    checks = []
    print("\ntargets (best dev point within budget; hull = mixing two cost weights)")
    for router in result.routers:
        points = [p.point for p in router.points]
        for budget in BUDGETS:
            got, mixed, target = (
                best_under(points, budget),
                hull_at(points, budget),
                TARGETS[budget],
            )
            checks.append(
                {
                    "router": router.name,
                    "budget": budget,
                    "quality": got,
                    "hull": mixed,
                    "target": target,
                    "met": got >= target,
                }
            )
            print(
                f"  {'MET ' if got >= target else 'MISS'} {router.name:<14} <= ${budget:.2f}: "
                f"{got:.4f} (hull {mixed:.4f}; target {target:.2f})"
            )
    return checks


def open7(root: Path, encoder: Encoder, work: Path) -> dict[str, Any]:
    source = root / "open7" / "train.jsonl"
    lines = [line for line in source.read_text().splitlines() if line.strip()]
    held = stratified_holdout([r.task for r in read_rows(source)], 0.2, seed=0)
    train_path, test_path = work / "open7-train.jsonl", work / "open7-test.jsonl"
    train_path.write_text("".join(f"{x}\n" for x, h in zip(lines, held, strict=True) if not h))
    test_path.write_text("".join(f"{x}\n" for x, h in zip(lines, held, strict=True) if h))
    data = TrainingData.load([train_path], encoder, progress=False)
    table = validate(data, stratified_holdout([r.task for r in data.rows], 0.2, seed=1))
    print_validation("open7", table, "quality")
    best = max(table, key=lambda e: e["score"])
    auto, _ = train_to(data, {}, work / "knn")
    tuned, _ = train_to(data, options_of(best), work / "knn-valsplit")
    result = evaluate([auto, tuned], test_path, progress=False)
    base = result.baselines
    top = base.single[base.best_single][1]
    print(f"\nopen7: {result.rows} held-out rows (task-stratified 20%, seed 0)")
    for router in result.routers:
        quality = router.points[0].quality
        print(
            f"  {router.name:<14} quality {quality:.4f}  ({(quality - top) * 100:+.2f} points "
            f"vs best single)"
        )
    print(
        f"  best single {base.best_single}: {top:.4f}; random {base.random[1]:.4f}; "
        f"oracle {base.oracle[1]:.4f}"
    )
    print(f"  k=auto chose {auto_choice(auto)}; the validation split chose {options_of(best)}")
    return {
        "validation": table,
        "valsplit_choice": options_of(best),
        "auto_choice": auto_choice(auto),
        "eval": result.to_json(),
        "holdout_seeds": open7_seeds(lines, encoder, work),
    }


def open7_seeds(
    lines: list[str], encoder: Encoder, work: Path, seeds: int = 5
) -> list[dict[str, float]]:
    """The +3 points target on five different 20% hold-outs (seed 0 is the one above): one
    split's margin swings by a point or more with the rows drawn, so the mean is the
    figure to trust. knn (trainer defaults) vs the same without shrink, and the
    task-label router (not a selector: it is handed each held-out row's task)."""
    rows = [json.loads(line) for line in lines]
    tasks = [row["task"] for row in rows]
    table = []
    print(f"\nopen7 over {seeds} hold-out seeds (points above the best single model)")
    for seed in range(seeds):
        held = stratified_holdout(tasks, 0.2, seed=seed)
        train_path, test_path = (
            work / f"open7-{seed}-train.jsonl",
            work / f"open7-{seed}-test.jsonl",
        )
        train_path.write_text("".join(f"{x}\n" for x, h in zip(lines, held, strict=True) if not h))
        test_path.write_text("".join(f"{x}\n" for x, h in zip(lines, held, strict=True) if h))
        data = TrainingData.load([train_path], encoder, progress=False)
        knn, _ = train_to(data, {}, work / f"knn-{seed}")
        plain, _ = train_to(data, {"shrink": 0}, work / f"knn-noshrink-{seed}")
        result = evaluate([knn, plain], test_path, progress=False)
        top = result.baselines.single[result.baselines.best_single][1]
        train_rows, test_rows = read_rows(train_path), read_rows(test_path)
        task_label = task_label_quality(train_rows, test_rows)
        entry = {
            "seed": seed,
            "best_single": top,
            "knn": (result.routers[0].points[0].quality - top) * 100,
            "knn_noshrink": (result.routers[1].points[0].quality - top) * 100,
            "task_label": (task_label - top) * 100,
        }
        table.append(entry)
        print(
            f"  seed {seed}: knn {entry['knn']:+.2f}  knn shrink=0 {entry['knn_noshrink']:+.2f}"
            f"  task-label router {entry['task_label']:+.2f}"
        )
    for key in ("knn", "knn_noshrink", "task_label"):
        values = [entry[key] for entry in table]
        print(f"  {key:<13} mean {statistics.mean(values):+.2f} (min {min(values):+.2f})")
    return table


def task_label_quality(train: Sequence[RoutingRow], test: Sequence[RoutingRow]) -> float:
    """Mean score of routing each test row to its task's best model on train."""
    models, means = list(train[0].scores), task_means(train)
    return statistics.mean(row.scores[models[int(np.argmax(means[row.task][0]))]] for row in test)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    SELECTORS.setdefault("knn", KnnSelector)  # until the registry lines are in
    TRAINERS.setdefault("knn", train_knn)
    warnings.simplefilter("ignore", RuntimeWarning)  # means over open7's absent costs
    encoder = build_encoder(EmbeddingsConfig())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {
            "routerbench": routerbench(args.data, encoder, work, not args.no_plot),
            "open7": open7(args.data, encoder, work),
        }
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine()}
    out = RESULTS / "selection.json"
    out.write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
