"""A trained cascade's live budget hold (``hold_budget``) replayed on RouterBench dev.

1. The cascade is trained on train.jsonl as ``router-proxy train --algorithm cascade``
   does (its default options; or ``--artifact DIR``, one trained so already).
2. Every dev row is replayed once under every plan of the artifact (``cascade_sim``: every
   call paid, discarded answers included; the returned answer's score), so a request's
   cost and quality under any plan is a lookup.
3. Streams of ``--requests`` requests drawn from dev with replacement, in several mixes:
   dev as it is; the kind that costs most per request at the knob three times as often
   (Winogrande, at both knobs); the cheapest kind (MBPP) three times as often; hard
   prompts (those whose first stage does not answer at the knob) three times as often;
   and a shift, dev's mix for the first half and the costly kind's after it.
4. Each stream is served at the knob (``budget_per_1k`` 1.50 and 2.50) without the hold,
   and with it: ``selection/budget_hold.py``'s ``BudgetHold`` itself (default settings:
   window 500, min_requests 100) asked for the knob before each request and told its
   replayed cost after it, with ``--lag`` requests between (the requests in flight on a
   busy replica). A request's plan is the artifact's for its kind and the hash draw of its
   embedding at that knob, as ``CascadeArtifact.stages`` gives it.
5. Reported per stream, mean over ``--seeds`` draws: spend per 1k and quality over the
   second half of the stream (the hold has settled) and over all of it, the final knob,
   and, for reference, the one fixed knob that would have spent the budget on that second
   half (what ``router-proxy calibrate`` finds offline when it is given that traffic) and
   its quality.

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python -m benchmarks.selection.budget_hold

Writes results/budget_hold.json beside this file (~50 s with training, ~10 s with
``--artifact``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder
from router_proxy.selection.budget_hold import BudgetHold, HoldBudgetConfig
from router_proxy.selection.cascade_artifact import CascadeArtifact, draws
from router_proxy.training.cascade_sim import AnswerTable, replay, table_agreement
from router_proxy.training.data import TrainingData, embed_prompts
from router_proxy.training.evaluate import HeldOut
from router_proxy.training.registry import TRAINERS

HERE = Path(__file__).resolve().parent
KNOBS = (1.5, 2.5)
SKEW = 3.0  # how much more often the skewed kind comes

Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Replayed:
    """Every dev row under every plan: US$ per request and score."""

    artifact: CascadeArtifact
    kinds: npt.NDArray[np.intp]
    draws: Vector
    cost: Vector  # plans x rows
    quality: Vector
    escalated: npt.NDArray[np.bool_]  # plans x rows: the first stage did not answer

    def plans_at(self, knob: float, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """The plan index each row gets at ``knob`` (``CascadeArtifact.stages``)."""
        mix = self.artifact.mix(knob)
        entry = np.where(self.draws[rows] < mix.share, mix.high, mix.low)
        plans: npt.NDArray[np.intp] = self.artifact.frontier_policy[entry, self.kinds[rows]]
        return plans

    def plan_of(self, knob: float, row: int) -> int:
        return int(
            self.artifact.frontier_policy[
                self.artifact.mix(knob).pick(self.draws[row]), self.kinds[row]
            ]
        )


def replayed(directory: Path, dev: Path) -> Replayed:
    artifact = CascadeArtifact.load(directory)
    test = HeldOut.read(dev)
    vectors = embed_prompts([r.prompt for r in test.rows], build_encoder(EmbeddingsConfig()))
    table = AnswerTable(test.rows, artifact.code_similarity)
    agree = table_agreement(table)
    column = {
        m: int(c) for m, c in zip(artifact.models, test.columns(artifact.models), strict=True)
    }
    rows = np.arange(len(test.rows))
    cost = np.zeros((len(artifact.plans), len(rows)))
    quality = np.zeros_like(cost)
    escalated = np.zeros(cost.shape, dtype=bool)
    for plan in np.unique(artifact.frontier_policy).tolist():
        stages = artifact.plans[plan]
        out = replay(stages, agree, rows, test.scores, test.costs, column)
        cost[plan], quality[plan] = out.cost, out.quality
        escalated[plan] = out.calls > len(stages[0])
    kinds = artifact.index.of_batch(vectors)
    return Replayed(artifact, kinds, draws(vectors), cost, quality, escalated)


def streams(
    data: Replayed, knob: float, requests: int, seed: int
) -> dict[str, npt.NDArray[np.intp]]:
    """Row indices of each mix's stream."""
    rng = np.random.default_rng(seed)
    rows = np.arange(data.cost.shape[1])
    spend = data.cost[data.plans_at(knob, rows), rows]
    present = np.unique(data.kinds)
    per_kind = {int(k): spend[data.kinds == k].mean() for k in present}
    costly, cheap = max(per_kind, key=per_kind.__getitem__), min(per_kind, key=per_kind.__getitem__)

    # Hard prompts: those whose first stage does not answer at the knob (they escalate).
    hard = data.escalated[data.plans_at(knob, rows), rows]

    def draw(chosen: npt.NDArray[np.bool_] | None, count: int) -> npt.NDArray[np.intp]:
        weight = np.where(chosen, SKEW, 1.0) if chosen is not None else np.ones(len(rows))
        return rng.choice(rows, size=count, p=weight / weight.sum())

    half = requests // 2
    names = data.artifact.kind_names
    return {
        "dev mix": draw(None, requests),
        f"{names[costly]} x{SKEW:g}": draw(data.kinds == costly, requests),
        f"{names[cheap]} x{SKEW:g}": draw(data.kinds == cheap, requests),
        f"escalating prompts x{SKEW:g}": draw(hard, requests),
        f"shift: dev, then {names[costly]} x{SKEW:g}": np.concatenate(
            [draw(None, half), draw(data.kinds == costly, requests - half)]
        ),
    }


def served(
    data: Replayed, knob: float, stream: npt.NDArray[np.intp], lag: int, hold: bool
) -> tuple[Vector, Vector, float]:
    """Each request's cost per 1k and quality; the knob at the end."""
    if not hold:
        plans = data.plans_at(knob, stream)
        return data.cost[plans, stream] * 1000, data.quality[plans, stream], knob
    controller = BudgetHold(knob, HoldBudgetConfig())
    cost, quality = np.zeros(len(stream)), np.zeros(len(stream))
    pending: deque[tuple[float, float]] = deque()  # (US$, the knob it was planned at)
    for i, row in enumerate(stream.tolist()):
        asked = controller.knob
        plan = data.plan_of(asked, row)
        cost[i], quality[i] = data.cost[plan, row] * 1000, data.quality[plan, row]
        pending.append((cost[i] / 1000, asked))
        if len(pending) > lag:
            controller.observe(*pending.popleft())
    return cost, quality, controller.knob


def fixed_knob(
    data: Replayed, budget: float, stream: npt.NDArray[np.intp]
) -> tuple[float, float, float]:
    """The fixed knob whose spend on ``stream`` is the budget (bisection; spend rises with
    the knob in steps): the knob, its spend per 1k, its quality."""

    def spend(knob: float) -> float:
        plans = data.plans_at(knob, stream)
        return float(data.cost[plans, stream].mean() * 1000)

    low, high = budget / 8, budget * 8
    for _ in range(40):
        middle = (low * high) ** 0.5
        low, high = (middle, high) if spend(middle) <= budget else (low, middle)
    plans = data.plans_at(low, stream)
    return low, spend(low), float(data.quality[plans, stream].mean())


def run(data: Replayed, requests: int, seeds: int, lag: int) -> list[dict[str, Any]]:
    rows = []
    for knob in KNOBS:
        found: dict[str, list[dict[str, float]]] = {}
        for seed in range(seeds):
            for name, stream in streams(data, knob, requests, seed).items():
                half = len(stream) // 2
                cell: dict[str, float] = {}
                for hold in (False, True):
                    cost, quality, final = served(data, knob, stream, lag, hold)
                    tag = "held" if hold else "fixed"
                    cell[f"{tag}_spend"] = float(cost[half:].mean())
                    cell[f"{tag}_quality"] = float(quality[half:].mean())
                    cell[f"{tag}_spend_all"] = float(cost.mean())
                    cell[f"{tag}_quality_all"] = float(quality.mean())
                    cell[f"{tag}_knob"] = final
                best, spent, quality_at = fixed_knob(data, knob, stream[half:])
                cell |= {
                    "calibrated_knob": best,
                    "calibrated_spend": spent,
                    "calibrated_quality": quality_at,
                }
                found.setdefault(name, []).append(cell)
        for name, cells in found.items():
            mean = {k: round(float(np.mean([c[k] for c in cells])), 4) for k in cells[0]}
            spread = {
                f"{k}_sd": round(float(np.std([c[k] for c in cells])), 4)
                for k in ("fixed_spend", "held_spend", "held_quality")
            }
            rows.append({"budget_per_1k": knob, "stream": name} | mean | spread)
    return rows


def train(train_rows: Path, out: Path) -> float:
    """``router-proxy train --algorithm cascade`` with its defaults."""
    started = time.perf_counter()
    data = TrainingData.load([train_rows], build_encoder(EmbeddingsConfig()), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        TRAINERS["cascade"](data, {}).save(out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/work/shared/data", help="holds routerbench/")
    parser.add_argument("--artifact", type=Path, help="a trained cascade (else trained here)")
    parser.add_argument("--requests", type=int, default=6000, help="per stream")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--lag", type=int, default=0, help="requests in flight before a cost is told"
    )
    args = parser.parse_args()
    root = Path(args.data) / "routerbench"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        directory = args.artifact
        trained = None
        if directory is None:
            directory = Path(folder) / "cascade"
            trained = round(train(root / "train.jsonl", directory), 1)
        data = replayed(directory, root / "dev.jsonl")
    rows = run(data, args.requests, args.seeds, args.lag)
    report = {
        "requests": args.requests,
        "seeds": args.seeds,
        "lag": args.lag,
        "hold": HoldBudgetConfig().model_dump(),
        "training_s": trained,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "budget_hold.json").write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{args.requests} requests per stream, {args.seeds} seeds, lag {args.lag}; "
        "second half of each stream (all of it in brackets)"
    )
    print(
        f"{'knob':>5} {'stream':<36} {'fixed: $/1k':>12} {'q':>7} {'held: $/1k':>16} "
        f"{'q':>7} {'knob':>6} | {'calibrated knob':>15} {'$/1k':>6} {'q':>7}"
    )
    for r in rows:
        print(
            f"{r['budget_per_1k']:5.2f} {r['stream']:<36} "
            f"{r['fixed_spend']:6.3f} ({r['fixed_spend_all']:.2f}) {r['fixed_quality']:.4f} "
            f"{r['held_spend']:6.3f}±{r['held_spend_sd']:.3f} ({r['held_spend_all']:.2f}) "
            f"{r['held_quality']:.4f} {r['held_knob']:6.3f} | {r['calibrated_knob']:15.3f} "
            f"{r['calibrated_spend']:6.3f} {r['calibrated_quality']:.4f}"
        )
    print(f"wrote {results / 'budget_hold.json'} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
