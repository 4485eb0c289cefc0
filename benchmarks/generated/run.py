"""RouterBench as if it had no labels: the generated-data filters and CASCAL on
``prompt`` + ``responses`` only, judged on dev.jsonl against kNN trained with the true
``scores``.

1. train.jsonl is read and every row's ``scores`` is thrown away before anything else.
2. The filters of ``router-proxy generate`` (training/generate/filters.py) run on the
   models' extracted answers. RouterBench has no generator, so the strongest pool model,
   GPT-4 (gpt-4-1106-preview), plays the generator: its response is "the generator's own
   answer" (it is a pool member too, as a generator may be).
3. CASCAL (default options) is trained on: all rows; the rows each filter keeps; the rows
   both keep. kNN (k=auto) is trained on all rows WITH the true scores: the label-trained
   reference.
4. All are evaluated on dev.jsonl with its true scores and costs (``router-proxy eval``'s
   machinery: cost-weight sweep, AIQ on the shared cost axis, baselines) and plotted.
   The labels of train are read once more at the end, for a diagnostic only: how often
   the kept rows' consensus answer is actually right.

    .venv/bin/python -m benchmarks.generated.run [--data /work/shared/data/routerbench]

Writes results/generated.json and results/routerbench-generated.png beside this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder
from router_proxy.training.aiq import hull_at
from router_proxy.training.answers import extract_rows
from router_proxy.training.cascal_train import train_cascal
from router_proxy.training.data import TrainingData, embed_prompts
from router_proxy.training.dataset import RoutingRow, models_of, read_rows
from router_proxy.training.evaluate import evaluate
from router_proxy.training.generate.filters import (
    REASONS,
    FilterSettings,
    consensus_answer,
    verdict,
)
from router_proxy.training.knn_train import train_knn
from router_proxy.training.plot import plot

HERE = Path(__file__).resolve().parent
GENERATOR = "gpt-4-1106-preview"
BUDGETS = (0.5, 2.5)  # US$ per 1,000 queries
VARIANTS = {
    "cascal-all": None,
    "cascal-agreement": FilterSettings(agreement=True, differentiation=False),
    "cascal-differentiation": FilterSettings(agreement=False, differentiation=True),
    "cascal-filtered": FilterSettings(),
}


def unlabelled(rows: list[RoutingRow]) -> list[RoutingRow]:
    return [dataclasses.replace(row, scores={}) for row in rows]


def filter_rows(
    rows: list[RoutingRow], answers: list[list[Any]], models: list[str], settings: FilterSettings
) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """A keep mask and, per task, how many rows each reason dropped."""
    g = models.index(GENERATOR)
    keep = np.zeros(len(rows), dtype=bool)
    drops: dict[str, dict[str, int]] = {}
    for i, (row, row_answers) in enumerate(zip(rows, answers, strict=True)):
        reason = verdict(row_answers[g], row_answers, settings)
        counts = drops.setdefault(row.task, {r: 0 for r in (*REASONS, "kept")})
        counts[reason or "kept"] += 1
        keep[i] = reason is None
    return keep, drops


def consensus_accuracy(
    labelled: list[RoutingRow], answers: list[list[Any]], models: list[str], mask: np.ndarray
) -> float:
    """Diagnostic (reads train's labels): share of rows whose consensus answer is right."""
    right = []
    for row, row_answers, kept in zip(labelled, answers, mask, strict=True):
        top, _ = consensus_answer(row_answers)
        if kept and top is not None:
            givers = [m for m, a in zip(models, row_answers, strict=True) if a == top]
            right.append(np.mean([row.scores[m] for m in givers]) >= 0.5)
    return float(np.mean(right)) if right else float("nan")


def cascal(data: TrainingData, mask: np.ndarray, folder: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return train_cascal(data.subset(mask), {}).save(folder)


def subsample_aiq(
    data: TrainingData, mask: np.ndarray, count: int, dev: Path, folder: Path
) -> list[float]:
    """Dev AIQ of CASCAL retrained on ``count`` seeded random 90% subsets of the kept rows
    (the same subsets of train for every variant)."""
    values = []
    for seed in range(count):
        sub = mask & (np.random.default_rng(seed).random(len(mask)) < 0.9)
        result = evaluate([cascal(data, sub, folder)], dev, progress=False)
        values.append(result.routers[0].aiq)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/routerbench"))
    parser.add_argument(
        "--subsamples",
        type=int,
        default=0,
        help="also retrain each variant on this many random 90%% subsets of train (spread)",
    )
    args = parser.parse_args()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    encoder = build_encoder(EmbeddingsConfig())

    labelled = read_rows(args.data / "train.jsonl")
    rows = unlabelled(labelled)
    models = models_of(rows, "responses")
    vectors = embed_prompts([r.prompt for r in rows], encoder, progress=False)
    data = TrainingData(rows, vectors, models, encoder.name, "routerbench-train-unlabelled")
    answers = extract_rows(rows, models)

    report: dict[str, Any] = {"generator": GENERATOR, "train_rows": len(rows), "variants": {}}
    routers = []
    for name, settings in VARIANTS.items():
        mask = np.ones(len(rows), dtype=bool)
        drops: dict[str, dict[str, int]] = {}
        if settings is not None:
            mask, drops = filter_rows(rows, answers, models, settings)
        routers.append(cascal(data, mask, out / "artifacts" / name))
        report["variants"][name] = {
            "rows": int(mask.sum()),
            "drops_by_task": drops,
            "consensus_right_diagnostic": consensus_accuracy(labelled, answers, models, mask),
        }
        if args.subsamples:
            report["variants"][name]["subsample_aiq"] = subsample_aiq(
                data, mask, args.subsamples, args.data / "dev.jsonl", out / "artifacts" / "sub"
            )

    knn_data = TrainingData.load([args.data / "train.jsonl"], encoder, progress=False)
    routers.append(train_knn(knn_data, {}).save(out / "artifacts" / "knn-true-scores"))

    result = evaluate(routers, args.data / "dev.jsonl", progress=False)
    plot(result, out / "routerbench-generated.png")
    for curve in result.routers:
        points = [p.point for p in curve.points]
        entry = report["variants"].setdefault(curve.name, {})
        entry["aiq"] = curve.aiq
        for budget in BUDGETS:
            entry[f"best_at_{budget}"] = max((q for c, q in points if c <= budget), default=None)
            entry[f"hull_at_{budget}"] = hull_at(points, budget, float("nan"))
        entry["curve"] = [(p.cost_weight, p.cost_per_1k, p.quality) for p in curve.points]
    report["zero_router_aiq"] = result.zero_router_aiq
    report["cost_axis"] = result.axis
    report["best_single"] = [
        result.baselines.best_single,
        result.baselines.single[result.baselines.best_single],
    ]
    (out / "generated.json").write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)


def print_report(report: dict[str, Any]) -> None:
    print(f"RouterBench train {report['train_rows']} rows, labels dropped; generator {GENERATOR}")
    for name, entry in report["variants"].items():
        drops = entry.get("drops_by_task") or {}
        if drops:
            total = {k: sum(d[k] for d in drops.values()) for k in next(iter(drops.values()))}
            dropped = {k: v for k, v in total.items() if k != "kept"}
            print(f"  {name}: kept {entry['rows']}; dropped {json.dumps(dropped)}")
            for task, d in drops.items():
                print(f"    {task}: {json.dumps(d)}")
    head = ("router", "rows", "AIQ", "<=$0.50", "(hull)", "<=$2.50", "(hull)", "cons.right")
    print("\n{:<24} {:>5} {:>7} {:>8} {:>7} {:>8} {:>7} {:>10}".format(*head))
    for name, e in report["variants"].items():
        print(
            f"{name:<24} {e.get('rows', '-'):>5} {e['aiq']:7.4f} {e['best_at_0.5']:8.4f} "
            f"{e['hull_at_0.5']:7.4f} {e['best_at_2.5']:8.4f} {e['hull_at_2.5']:7.4f} "
            f"{e.get('consensus_right_diagnostic', float('nan')):10.3f}"
        )
    print(f"{'zero router':<24} {'':>5} {report['zero_router_aiq']:7.4f}")
    for name, e in report["variants"].items():
        if e.get("subsample_aiq"):
            values = np.array(e["subsample_aiq"])
            spread = f"{values.mean():.4f} +- {values.std():.4f} ({len(values)} subsets)"
            print(f"{name}: dev AIQ when trained on 90% subsets {spread}")
    model, (cost, quality) = report["best_single"]
    low, high = report["cost_axis"]
    print(f"best single: {model} {quality:.4f} at ${cost:.2f}/1k; AIQ axis ${low:.3f}-${high:.3f}")


if __name__ == "__main__":
    main()
