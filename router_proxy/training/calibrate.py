"""``router-proxy calibrate``: the ``cost_weight`` that meets a dollar budget.

A learned selector routes each prompt to argmax(predicted quality - cost_weight * $/1k).
Raising the weight only ever moves a prompt to a cheaper model, so each prompt's choice is
piecewise constant in the weight, changing at a few breakpoints (where a cheaper model's
line overtakes the current one). ``routing_curve`` finds every breakpoint of every prompt
and walks them in order, so it knows the exact quality and spend of routing the data set
at every weight, with no grid. The total spend is not guaranteed to fall monotonically
(a prompt can move to a model that is cheaper on average but dearer on that prompt), so
``calibrate`` scans the whole curve: among the weights spending at most the target, the
one with the best quality (then the lowest spend).

Spend is measured with each row's own ``costs`` (a missing one at that model's mean in
the data, as ``router-proxy eval`` does); quality with the rows' ``scores``. Calibrate on
data the router was not trained on when there is some (the training set flatters its
predictions).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt

from router_proxy.selection.artifact import ArtifactError, read_meta
from router_proxy.selection.cascade_artifact import ALGORITHM as CASCADE
from router_proxy.selection.learned import LearnedSelector
from router_proxy.training.data import embed_prompts
from router_proxy.training.dataset import DatasetError
from router_proxy.training.evaluate import HeldOut, resources_for, selector_from_artifact
from router_proxy.training.extra import require_tqdm

Matrix = npt.NDArray[np.float64]

# Crossings this close (relative) are one breakpoint. They are ties that rounding split
# (knn's averaged scores tie often): the slivers between them, far narrower than the
# selector's float32 ranking can tell apart, are routings no served weight gives.
SAME_WEIGHT = 1e-6


class CalibrationError(ValueError):
    """No weight meets the budget, or the data does not fit the artifact."""


@dataclass(frozen=True)
class RoutePoint:
    cost_weight: float  # a weight inside the interval where routing is this
    quality: float  # mean score of the chosen models
    cost_per_1k: float  # US$ per 1,000 queries
    low: float = 0.0  # the interval of weights giving this routing: [low, high)
    high: float = float("inf")


def load_router(artifact_dir: str | Path, encoder_model: str | None = None) -> LearnedSelector:
    """The artifact's registered selector over all its models (cost_weight 0), with the
    encoder the artifact names, without a config (as ``router-proxy eval`` builds it)."""
    encoder = str(read_meta(artifact_dir).get("encoder"))
    return selector_from_artifact(artifact_dir, resources_for(encoder, encoder_model))


def _switches(quality: Matrix, per_1k: Matrix) -> tuple[npt.NDArray[np.int64], list[Matrix]]:
    """Each row's choice at weight 0 and its later switches as (weight, row, model) rows,
    found by walking each row's upper envelope toward cheaper models."""
    n, _ = quality.shape
    rows = np.arange(n)
    # At weight 0: the best quality, the cheapest among ties.
    utility0 = quality - 1e-12 * per_1k[None, :]
    first = np.argmax(utility0, axis=1)
    current, weight = first.copy(), np.zeros(n)
    events: list[Matrix] = []
    active = np.ones(n, dtype=bool)
    while active.any():
        dq = quality[rows, current][:, None] - quality  # quality given up by switching
        dc = per_1k[current][:, None] - per_1k[None, :]  # dollars saved by switching
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = np.where(dc > 0, np.maximum(dq / dc, weight[:, None]), np.inf)
        at = cross.min(axis=1)
        # Among simultaneous crossings the cheapest model wins from there on.
        nxt = np.argmin(np.where(cross == at[:, None], per_1k[None, :], np.inf), axis=1)
        active = np.isfinite(at)
        if active.any():
            events.append(np.stack([at[active], rows[active], nxt[active]], axis=1))
        current = np.where(active, nxt, current)
        weight = np.where(active, at, weight)
    return first, events


def routing_curve(
    quality: Matrix, per_1k: Matrix, scores: Matrix, costs: Matrix
) -> list[RoutePoint]:
    """Exact (quality, $/1k) of routing the rows at every cost weight, one point per
    interval of weights that routes alike, from weight 0 up."""
    n = len(quality)
    if n == 0:
        raise CalibrationError("no rows to calibrate on")
    choice, events = _switches(quality, np.asarray(per_1k, dtype=np.float64))
    rows = np.arange(n)
    q_sum, c_sum = scores[rows, choice].sum(), costs[rows, choice].sum()
    table = np.concatenate(events) if events else np.zeros((0, 3))
    table = table[np.argsort(table[:, 0], kind="stable")]
    points: list[RoutePoint] = []
    low, i = 0.0, 0
    while True:
        high = float(table[i, 0]) if i < len(table) else float("inf")
        if high > low or i == len(table):
            mid = _inside(low, high)
            points.append(RoutePoint(mid, float(q_sum / n), float(c_sum / n), low, high))
        if i == len(table):
            return points
        # One breakpoint takes every crossing within SAME_WEIGHT of the last one taken;
        # the routing after them all holds from the last one on.
        low = high
        while i < len(table) and table[i, 0] <= low * (1 + SAME_WEIGHT):
            low = float(table[i, 0])
            r, m = int(table[i, 1]), int(table[i, 2])
            q_sum += scores[r, m] - scores[r, choice[r]]
            c_sum += costs[r, m] - costs[r, choice[r]]
            choice[r] = m
            i += 1


def _inside(low: float, high: float) -> float:
    """A short decimal weight in (low, high), or 0 for [0, high): the fewest significant
    digits that fit. Not ``low`` itself: at a breakpoint the served ranking is a tie, which
    the selector breaks by candidate order, not by price."""
    if high == float("inf"):
        return float(f"{max(low * 1.5, 1e-3):.2g}") if low > 0 else 0.0
    if low == 0.0:
        return 0.0
    target = float(np.sqrt(low * high))
    for digits in range(1, 18):
        value = float(f"{target:.{digits}g}")
        if low < value < high:
            return value
    return target


def decimal_text(value: float) -> str:
    """``value`` in the fewest digits that read back as it, never in e-notation (YAML 1.1
    reads ``1e-05`` as a string); ``:g`` keeps 6 digits, which can leave the interval."""
    return str(np.format_float_positional(value, trim="-"))


def interval_text(point: RoutePoint) -> str:
    """The weights routing as ``point`` does, rounded inward with as many significant
    digits as it takes to show ``point.cost_weight`` inside: ``[0, 0.1223)``,
    ``(0.10081, 0.10084)``. Open at a breakpoint (a tie there, see ``_inside``)."""
    low, high, weight = point.low, point.high, point.cost_weight
    for digits in range(4, 18):
        shown_low = _round(low, digits, ROUND_CEILING)
        shown_high = _round(high, digits, ROUND_FLOOR)
        if shown_low <= weight < shown_high and (low == 0 or shown_low < weight):
            break
    opening = "[" if low == 0 else "("
    upper = "inf" if high == float("inf") else f"{shown_high:g}"
    return f"{opening}{shown_low:g}, {upper})"


def _round(value: float, digits: int, rounding: str) -> Decimal:
    exact = Decimal(value)
    if not exact.is_finite() or exact == 0:
        return exact
    return exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding=rounding)


def choose(
    points: list[RoutePoint], target_cost_per_1k: float, knob: str = "cost_weight"
) -> RoutePoint:
    """The best quality at most ``target_cost_per_1k`` (then the lowest spend)."""
    feasible = [p for p in points if p.cost_per_1k <= target_cost_per_1k + 1e-9]
    if not feasible:
        cheapest = min(p.cost_per_1k for p in points)
        raise CalibrationError(
            f"no {knob} spends at most ${target_cost_per_1k:g} per 1k queries on this "
            f"data; the cheapest routing spends ${cheapest:.4g}"
        )
    return max(feasible, key=lambda p: (p.quality, -p.cost_per_1k, -p.cost_weight))


def curve_for(
    artifact_dir: str | Path,
    data_path: str | Path,
    *,
    candidates: list[str] | None = None,
    encoder_model: str | None = None,
    progress: bool = False,
) -> list[RoutePoint]:
    """The routing curve of an artifact over a data file (all its models by default)."""
    selector = load_router(artifact_dir, encoder_model)
    models = selector.artifact.models
    names = candidates or models
    unknown = [c for c in names if c not in models]
    if unknown:
        raise CalibrationError(f"the artifact does not know {unknown}; it knows {models}")
    data = HeldOut.read(data_path)
    columns = data.columns(names)
    index = np.array([models.index(c) for c in names])
    recorded = selector.artifact.arrays.get("cost_per_1k")
    per_1k = np.zeros(len(models)) if recorded is None else recorded.astype(np.float64)
    try:
        vectors = embed_prompts(
            [r.prompt for r in data.rows], selector.encoder.get(), progress=progress
        )
    finally:
        selector.encoder.close()
    quality = np.asarray(selector.predict_batch(vectors), dtype=np.float64)[:, index]
    return routing_curve(
        quality,
        per_1k[index],
        data.scores[:, columns].astype(np.float64),
        data.costs[:, columns].astype(np.float64) * 1000.0,
    )


def calibrate(artifact_dir: str | Path, data_path: str | Path, target_cost_per_1k: float) -> float:
    """The cost_weight whose routing of ``data_path`` spends at most the target US$ per
    1,000 queries with the best quality."""
    return choose(curve_for(artifact_dir, data_path), target_cost_per_1k).cost_weight


def params_snippet(artifact_dir: str | Path, cost_weight: float) -> str:
    """The ``route.params`` line to paste into a decision."""
    return f"params: {{artifact: {artifact_dir}, cost_weight: {decimal_text(cost_weight)}}}"


def _command(args: argparse.Namespace) -> int:
    require_tqdm("router-proxy calibrate")  # before any work; the CLI prints the install line
    try:
        if read_meta(args.router).get("algorithm") == CASCADE:
            best, knob, snippet = _cascade_choice(args)
            shown = decimal_text(best.cost_weight)
        else:
            best, knob, snippet = _weight_choice(args)
            shown = f"{decimal_text(best.cost_weight)}  (any in {interval_text(best)})"
    except (CalibrationError, ArtifactError, DatasetError, OSError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 1
    width = len(knob) + 2  # the values in one column under the knob's name
    print(f"{knob + ':':<{width}}{shown}")
    print(f"{'quality:':<{width}}{best.quality:.4f}")
    print(f"{'$/1k:':<{width}}{best.cost_per_1k:.4f}  (target {args.target_cost_per_1k:g})")
    print(snippet)
    return 0


def _weight_choice(args: argparse.Namespace) -> tuple[RoutePoint, str, str]:
    """A learned selector's best ``cost_weight`` within the target, on this data."""
    candidates = args.candidates.split(",") if args.candidates else None
    points = curve_for(
        args.router,
        args.data,
        candidates=candidates,
        encoder_model=args.embeddings_model,
        progress=True,
    )
    best = choose(points, args.target_cost_per_1k)
    return best, "cost_weight", params_snippet(args.router, best.cost_weight)


def _cascade_choice(args: argparse.Namespace) -> tuple[RoutePoint, str, str]:
    """A cascade's knob is its budget: the one meeting the target on this data."""
    # Here, not at the top: calibrate_cascade builds on this module's points and choice.
    from router_proxy.training.calibrate_cascade import budget_snippet, cascade_points

    if args.candidates:
        raise CalibrationError("--candidates does not apply to a cascade artifact")
    points = cascade_points(
        args.router, args.data, encoder_model=args.embeddings_model, progress=True
    )
    best = choose(points, args.target_cost_per_1k, "budget_per_1k")
    return best, "budget_per_1k", budget_snippet(args.router, best.cost_weight)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``calibrate`` to the ``router-proxy`` command line."""
    parser = subparsers.add_parser(
        "calibrate",
        help="pick a learned router's cost_weight (a cascade's budget_per_1k) for a "
        "$/1k-queries budget",
    )
    parser.add_argument("--router", required=True, help="artifact directory")
    parser.add_argument("--data", required=True, help="routing data (JSONL with scores)")
    parser.add_argument(
        "--target-cost-per-1k", type=float, required=True, help="US$ per 1,000 queries"
    )
    parser.add_argument("--candidates", help="comma-separated subset of the artifact's models")
    parser.add_argument("--embeddings-model", help="the encoder's model folder if not bundled")
    parser.set_defaults(handler=_command)
