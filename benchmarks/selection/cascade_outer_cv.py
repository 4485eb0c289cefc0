"""How the trained cascade generalises, estimated on all the labelled RouterBench rows:
outer cross-validation over train.jsonl + dev.jsonl pooled, the real trainer end to end.

Each fold: ``train_cascade`` (the same call as ``router-proxy train --algorithm cascade``,
with all its own inner choices) on four fifths of the pooled rows, the artifact saved and
loaded, and the held-out fifth replayed as ``router-proxy eval`` replays it (each prompt's
kind from its embedding, every call paid): at the knob set to exactly $1.50 and $2.50, and
the best swept point spending at most each. Folds are stratified by task and seeded.
Trainer options are compared side by side on the same folds (``VARIANTS``).

Dev alone (438 rows) moves by a prompt or two between close variants; pooling gives five
times the held-out rows, none of them used to train the fold's artifact.

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python -m benchmarks.selection.cascade_outer_cv
    (--seeds 0 1 2 for more; the default is seeds 0 and 1)

Writes results/cascade_outer_cv.json beside this file (~2 min per seed on 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder
from router_proxy.selection.cascade_artifact import CascadeArtifact, draws
from router_proxy.training.cascade_eval import cascade_curve, run_at
from router_proxy.training.cascade_sim import AnswerTable
from router_proxy.training.cascade_train import train_cascade
from router_proxy.training.data import TrainingData, embed_prompts
from router_proxy.training.evaluate import HeldOut

HERE = Path(__file__).resolve().parent
BUDGETS = (1.5, 2.5)
FOLDS = 5
VARIANTS: dict[str, dict[str, Any]] = {
    "default (code similarity chosen by the trainer's CV)": {},
    "code kinds: single models only": {"code_cascades": False},
}


def stratified_folds(rows: list[dict[str, Any]], seed: int) -> list[int]:
    """Each row's fold, stratified by ``task`` (seeded)."""
    rng = random.Random(seed)
    by_task: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_task.setdefault(row["task"], []).append(i)
    fold = [0] * len(rows)
    for members in by_task.values():
        rng.shuffle(members)
        for j, i in enumerate(members):
            fold[i] = j % FOLDS
    return fold


def held_out_figures(artifact_dir: Path, test: HeldOut, vectors: Any) -> dict[str, float]:
    """Quality and spend at each knob, and the best swept quality within each budget."""
    artifact = CascadeArtifact.load(artifact_dir)
    kinds, draw, table = artifact.index.of_batch(vectors), draws(vectors), AnswerTable(test.rows)
    out: dict[str, float] = {}
    for budget in BUDGETS:
        run = run_at(artifact, kinds, budget, test, table, draw)
        out[f"knob {budget} quality"] = float(run.quality.mean())
        out[f"knob {budget} $/1k"] = float(run.cost.mean() * 1000.0)
    curve = cascade_curve(artifact_dir, vectors, test)
    for budget in BUDGETS:
        within = [p.quality for p in curve.points if p.cost_per_1k <= budget]
        out[f"best <= {budget}"] = max(within) if within else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--data", default="/work/shared/data", help="holds routerbench/")
    args = parser.parse_args()
    data_dir = Path(args.data) / "routerbench"
    rows = [
        json.loads(line)
        for name in ("train.jsonl", "dev.jsonl")
        for line in (data_dir / name).read_text().splitlines()
        if line.strip()
    ]
    encoder = build_encoder(EmbeddingsConfig())
    sums: dict[str, dict[str, float]] = {v: {} for v in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        bar = tqdm(total=len(args.seeds) * FOLDS * len(VARIANTS), desc="folds x variants")
        for seed in args.seeds:
            fold = stratified_folds(rows, seed)
            for f in range(FOLDS):
                train, test_path = root / f"train-{seed}-{f}.jsonl", root / f"test-{seed}-{f}.jsonl"
                for path, keep in ((train, False), (test_path, True)):
                    chosen = [r for r, k in zip(rows, fold, strict=True) if (k == f) == keep]
                    path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
                data = TrainingData.load([train], encoder, progress=False)
                test = HeldOut.read(test_path)
                vectors = embed_prompts([r.prompt for r in test.rows], encoder, progress=False)
                for name, options in VARIANTS.items():
                    directory = train_cascade(data, options | {"progress": False}).save(
                        root / f"a-{seed}-{f}"
                    )
                    for key, value in held_out_figures(directory, test, vectors).items():
                        # Weighted by held-out rows: the pooled mean over every row once per seed.
                        sums[name][key] = sums[name].get(key, 0.0) + value * len(test.rows)
                    bar.update()
        bar.close()
    total = len(rows) * len(args.seeds)
    result = {
        name: {k: round(v / total, 4) for k, v in figures.items()} for name, figures in sums.items()
    }
    for name, figures in result.items():
        print(name)
        print("  " + "  ".join(f"{k}: {v}" for k, v in figures.items()))
    out = HERE / "results" / "cascade_outer_cv.json"
    out.write_text(
        json.dumps({"seeds": args.seeds, "rows": len(rows), "variants": result}, indent=1)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
