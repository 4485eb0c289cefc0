"""Trained cascades on RouterBench beside the single-call routers (issue 15).

1. knn, mf, cascal (responses only) and cascade are trained on train.jsonl with their
   default options (every choice a trainer makes, it makes on train: the cascade's
   candidate families by 5-fold cross-validation on train). dev.jsonl is read once, to
   report.
2. ``router-proxy eval``'s code (``training/evaluate.py``) judges all four on dev in one
   call: curves on one axis, AIQ, baselines. The cascade's points are its budget knob's
   frontier entries; every call it makes is paid, discarded answers included.
3. Reported per router: AIQ and the best dev point within $0.50, $1.50 and $2.50 per 1k;
   for the cascade also what the knob set to exactly $1.50 and $2.50 gives on dev (cost,
   quality, calls per request, plan per kind) and the train-CV curve of its chosen family.
4. ``CascadeArtifact.stages`` latency per prompt (a ready embedding: kind + lookup).

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python -m benchmarks.selection.cascade [--data DIR]

Writes results/cascade.json and results/cascade.png beside this file (~40 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder
from router_proxy.selection.cascade_artifact import CascadeArtifact, draws
from router_proxy.training.aiq import best_under, hull_at
from router_proxy.training.cascade_eval import run_at
from router_proxy.training.cascade_sim import AnswerTable
from router_proxy.training.data import TrainingData, embed_prompts
from router_proxy.training.evaluate import Evaluation, HeldOut, evaluate
from router_proxy.training.registry import QUERY_ONLY, TRAINERS

HERE = Path(__file__).resolve().parent
ROUTERS = ("knn", "mf", "cascal", "cascade")
BUDGETS = (0.5, 1.5, 2.5)
TARGETS = {1.5: 0.855, 2.5: 0.875}
GPT4 = "gpt-4-1106-preview"


def train_all(train: Path, out: Path) -> dict[str, float]:
    encoder = build_encoder(EmbeddingsConfig())
    seconds = {}
    for algorithm in ROUTERS:
        field = "responses" if algorithm in QUERY_ONLY else "scores"
        data = TrainingData.load([train], encoder, field=field, progress=False)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            TRAINERS[algorithm](data, {}).save(out / algorithm)
        seconds[algorithm] = time.perf_counter() - started
    return seconds


def knob_points(directory: Path, dev: Path) -> list[dict[str, Any]]:
    """The dev outcome with the knob set to exactly each budget."""
    artifact = CascadeArtifact.load(directory)
    test = HeldOut.read(dev)
    vectors = embed_prompts([r.prompt for r in test.rows], build_encoder(EmbeddingsConfig()))
    kinds = artifact.index.of_batch(vectors)
    draw = draws(vectors)
    table = AnswerTable(test.rows, artifact.code_similarity)
    out = []
    for budget in BUDGETS:
        result = run_at(artifact, kinds, budget, test, table, draw)
        mix = artifact.mix(budget)
        share = mix.share  # of prompts on the dearer entry: the expected training figures
        cost, quality = artifact.frontier_cost, artifact.frontier_quality
        out.append(
            {
                "budget_per_1k": budget,
                "train_cost_per_1k": round(
                    float((1 - share) * cost[mix.low] + share * cost[mix.high]), 4
                ),
                "train_quality": round(
                    float((1 - share) * quality[mix.low] + share * quality[mix.high]), 4
                ),
                "dearer_share": round(share, 4),
                "dev_cost_per_1k": round(float(result.cost.mean() * 1000), 4),
                "dev_quality": round(float(result.quality.mean()), 4),
                "calls_per_request": round(float(result.calls.mean()), 3),
                "plans": {
                    name: [list(s) for s in artifact.plan_of(k, budget)]
                    for k, name in enumerate(artifact.kind_names)
                },
                "dearer_plans": {
                    name: [list(s) for s in artifact.plan_of(k, budget, 0.0)]
                    for k, name in enumerate(artifact.kind_names)
                    if artifact.plan_of(k, budget, 0.0) != artifact.plan_of(k, budget)
                },
            }
        )
    return out


def stages_latency(directory: Path, dev: Path) -> dict[str, float]:
    artifact = CascadeArtifact.load(directory)
    test = HeldOut.read(dev)
    vectors = embed_prompts([r.prompt for r in test.rows], build_encoder(EmbeddingsConfig()))
    timings = []
    for vector in vectors:
        started = time.perf_counter()
        artifact.stages(vector, 2.5)
        timings.append(time.perf_counter() - started)
    timings.sort()
    return {
        "p50_ms": round(statistics.median(timings) * 1000, 4),
        "p99_ms": round(timings[int(0.99 * (len(timings) - 1))] * 1000, 4),
    }


def cv_summary(directory: Path) -> dict[str, Any]:
    meta = json.loads((directory / "meta.json").read_text())
    chosen = meta["extra"]["families"]
    rows = []
    for entry in meta["extra"]["tuning"]:
        curve = [tuple(p) for p in entry["cv_curve"]]
        rows.append(
            {
                "families": entry["families"],
                "cv_aiq": entry["cv_aiq"],
                **{f"best<={b}": round(best_under(curve, b), 4) for b in BUDGETS},
                **{f"hull@{b}": round(hull_at(curve, b), 4) for b in BUDGETS},
            }
        )
    return {"chosen": chosen, "families": rows}


def figure(result: Evaluation, knob: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from router_proxy.training.plot import _draw_baselines, _hull_line

    fig, (ax, calls_ax) = plt.subplots(
        1, 2, figsize=(15, 6), dpi=110, gridspec_kw={"width_ratios": [2, 1]}
    )
    high = result.axis[1]
    for router in result.routers:
        points = [p.point for p in router.points]
        hull, tail = _hull_line(points, high)
        width = 2.5 if router.algorithm == "cascade" else 1.5
        (line,) = ax.plot(
            *zip(*hull, strict=True),
            linewidth=width,
            zorder=5,
            label=f"{router.name}, AIQ {router.aiq:.3f}",
        )
        if tail:
            ax.plot(*zip(*tail, strict=True), linestyle="--", linewidth=1, color=line.get_color())
        ax.scatter(*zip(*points, strict=True), s=12, color=line.get_color(), alpha=0.6, zorder=5)
        if router.calls is not None:
            budgets = [p.cost_weight for p in router.points]
            calls_ax.step(budgets, router.calls, where="post", color=line.get_color())
            calls_ax.scatter(budgets, router.calls, s=12, color=line.get_color())
    _draw_baselines(ax, result)
    style = {"marker": "D", "s": 60, "facecolors": "none", "edgecolors": "darkgreen", "zorder": 6}
    ax.scatter(list(TARGETS), list(TARGETS.values()), linewidths=1.5, **style)
    ax.scatter([], [], label=r"targets: 0.855 at \$1.50, 0.875 at \$2.50", **style)
    ax.scatter(
        [k["dev_cost_per_1k"] for k in knob],
        [k["dev_quality"] for k in knob],
        marker="X",
        s=70,
        color="black",
        zorder=7,
        label="cascade, knob set to exactly " + ", ".join(f"\\${k['budget_per_1k']}" for k in knob),
    )
    ax.set_xscale("log")
    ax.set_ylim(0.5, 1.0)
    ax.set_xlabel("US$ per 1,000 queries (every call paid)")
    ax.set_ylabel("quality (mean score)")
    ax.set_title(f"RouterBench dev ({result.rows} prompts), trained on train")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    calls_ax.set_xscale("log")
    calls_ax.set_xlabel("cascade budget_per_1k (US$)")
    calls_ax.set_ylabel("model calls per request (dev mean)")
    calls_ax.set_title("Calls per request")
    calls_ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/work/shared/data", help="holds routerbench/")
    args = parser.parse_args()
    train, dev = (
        Path(args.data) / "routerbench/train.jsonl",
        Path(args.data) / "routerbench/dev.jsonl",
    )
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        seconds = train_all(train, out)
        result = evaluate([out / r for r in ROUTERS], dev, progress=False)
        knob = knob_points(out / "cascade", dev)
        latency = stages_latency(out / "cascade", dev)
        cv = cv_summary(out / "cascade")
    summary = {
        r.name: {
            "aiq": round(r.aiq, 4),
            **{f"best<={b}": round(best_under([p.point for p in r.points], b), 4) for b in BUDGETS},
            "training_s": round(seconds[r.name], 2),
        }
        for r in result.routers
    }
    gpt4 = result.baselines.single[GPT4]
    report = {
        "dev": summary,
        "gpt4": {"cost_per_1k": round(gpt4[0], 4), "quality": round(gpt4[1], 4)},
        "zero_router_aiq": round(result.zero_router_aiq, 4),
        "cascade_knob_on_dev": knob,
        "cascade_train_cv": cv,
        "cascade_stages_latency": latency,
        "eval": result.to_json(),
    }
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "cascade.json").write_text(json.dumps(report, indent=1) + "\n")
    figure(result, knob, results / "cascade.png")
    print(f"GPT-4 alone on dev: {gpt4[1]:.4f} at ${gpt4[0]:.2f} per 1k")
    print(f"{'router':<10} {'AIQ':>7} " + " ".join(f"{'<=$' + str(b):>8}" for b in BUDGETS))
    for name, row in summary.items():
        cells = " ".join(f"{row[f'best<={b}']:8.4f}" for b in BUDGETS)
        print(f"{name:<10} {row['aiq']:7.4f} {cells}")
    for point in knob:
        print(
            f"cascade knob ${point['budget_per_1k']}: dev ${point['dev_cost_per_1k']:.3f} "
            f"q {point['dev_quality']:.4f}, {point['calls_per_request']} calls/request "
            f"(train ${point['train_cost_per_1k']:.3f} q {point['train_quality']:.4f}); "
            f"{json.dumps(point['plans'])}; {point['dearer_share']:.0%} of prompts: "
            f"{json.dumps(point['dearer_plans'])}"
        )
    print(f"train 5-fold CV (chosen: {cv['chosen']}):")
    for row in cv["families"]:
        print("  " + json.dumps(row))
    print(f"stages() per prompt: p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms")
    print(f"wrote {results / 'cascade.json'} and {results / 'cascade.png'}")


if __name__ == "__main__":
    main()
