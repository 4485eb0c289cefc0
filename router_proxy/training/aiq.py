"""Quality-cost curves, AIQ (RouterBench, Hu et al. 2024) and the baselines routers are
judged against.

A point is ``(cost, quality)``: dollars per 1,000 queries and mean score. AIQ, as
``shared/ALGORITHMS.md`` defines it: sort a router's points by cost, keep the
non-decreasing upper convex hull (points under the hull are dropped, and so is any hull
point below the one before it), extend the last hull point flat to the largest cost
among the routers compared, and divide the area under it by the shared cost range.

Where the reference is silent, ours: the shared range runs from the smallest to the
largest cost among the routers compared; below a router's cheapest point it has no
operating point and counts as quality 0 (a router swept to a large cost weight reaches
the cheapest model, so in practice every router starts at the same place); when the
range is empty (data without costs) AIQ is the hull's best quality.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

Point = tuple[float, float]  # (cost per 1k queries, quality)
Matrix = npt.NDArray[np.float32]


def _cross(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def upper_hull(points: Iterable[Point]) -> list[Point]:
    """The non-decreasing upper convex hull of ``points``, cheapest first."""
    best: dict[float, float] = {}
    for cost, quality in points:
        best[cost] = max(quality, best.get(cost, -np.inf))
    hull: list[Point] = []
    for point in sorted(best.items()):
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()  # hull[-1] lies on or under the segment hull[-2] -> point
        hull.append(point)
    rising: list[Point] = []
    for point in hull:
        if not rising or point[1] > rising[-1][1]:
            rising.append(point)
    return rising


def aiq(points: Sequence[Point], low: float, high: float) -> float:
    """Area under the non-decreasing hull of ``points`` on [low, high], extended flat to
    ``high`` and 0 below the cheapest point, divided by ``high - low``."""
    hull = upper_hull(points)
    if not hull:
        return 0.0
    if high <= low:
        return hull[-1][1]
    if hull[-1][0] < high:
        hull.append((high, hull[-1][1]))
    area = 0.0
    for (c0, q0), (c1, q1) in pairwise(hull):
        a, b = max(c0, low), min(c1, high)
        if b <= a:
            continue
        qa = q0 + (q1 - q0) * (a - c0) / (c1 - c0)
        qb = q0 + (q1 - q0) * (b - c0) / (c1 - c0)
        area += (b - a) * (qa + qb) / 2
    return area / (high - low)


def best_under(points: Iterable[Point], budget: float, default: float = 0.0) -> float:
    """Best quality of an actual point costing at most ``budget``."""
    return max((q for c, q in points if c <= budget), default=default)


def hull_at(points: Iterable[Point], budget: float, default: float = 0.0) -> float:
    """Quality of the hull at ``budget``: what mixing two cost weights at random reaches."""
    hull = upper_hull(points)
    below = [p for p in hull if p[0] <= budget]
    above = [p for p in hull if p[0] > budget]
    if not below:
        return default
    if not above:
        return below[-1][1]
    (c0, q0), (c1, q1) = below[-1], above[0]
    return q0 + (q1 - q0) * (budget - c0) / (c1 - c0)


def shared_axis(curves: Iterable[Sequence[Point]]) -> tuple[float, float]:
    """The cost range (low, high) spanned by all the curves compared."""
    costs = [cost for curve in curves for cost, _ in curve]
    return (min(costs), max(costs)) if costs else (0.0, 0.0)


@dataclass(frozen=True)
class CurvePoint:
    cost_weight: float
    cost_per_1k: float
    quality: float

    @property
    def point(self) -> Point:
        return (self.cost_per_1k, self.quality)


def fill_costs(costs: Matrix) -> Matrix:
    """Per-call costs with gaps filled: a model's mean over the rows that have it, else 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a model with no cost at all
        means = np.nan_to_num(np.nanmean(costs, axis=0)) if costs.size else np.zeros(0)
    filled: Matrix = np.where(np.isnan(costs), means, costs).astype(np.float32)
    return filled


def cost_weight_grid(predicted: Matrix, per_1k: Matrix, points: int = 48) -> list[float]:
    """0, then weights spaced geometrically from the 1st percentile of the rows' switching
    weights to just past the largest one, where every row goes to the cheapest model.

    A row switches from model i to a cheaper j at ``(p_i - p_j) / (c_i - c_j)``; these
    come from the predictions and the cost spread, so the grid fits any scale of either.
    """
    dq = predicted[:, :, None] - predicted[:, None, :]  # rows x i x j: p_i - p_j
    dc = (per_1k[:, None] - per_1k[None, :]).astype(np.float64)  # c_i - c_j
    mask = (dc > 0)[None, :, :] & (dq > 0)
    switches = (dq / np.where(dc > 0, dc, 1.0)[None, :, :])[mask]
    if switches.size == 0 or points < 2:
        return [0.0]
    low, high = float(np.quantile(switches, 0.01)), float(switches.max()) * 1.05
    grid = np.geomspace(low, high, points - 1) if high > low else np.array([high])
    return [0.0, *(float(w) for w in grid)]


def choices_at(predicted: Matrix, per_1k: Matrix, cost_weight: float) -> npt.NDArray[np.intp]:
    """Each row's top model by ``predicted - cost_weight * per_1k``: the arithmetic of
    ``LearnedSelector.rank`` (float32 penalty; the first of tied models wins)."""
    penalty = (cost_weight * per_1k).astype(np.float32)
    choice: npt.NDArray[np.intp] = np.argmax(predicted - penalty, axis=1)
    return choice


def point_of(choice: npt.NDArray[np.intp], scores: Matrix, costs: Matrix) -> Point:
    """(US$ per 1,000 queries, mean score) of routing row r to model ``choice[r]``."""
    rows = np.arange(len(choice))
    return float(costs[rows, choice].mean() * 1000.0), float(scores[rows, choice].mean())


Chooser = Callable[[float], npt.NDArray[np.intp]]  # cost weight -> each row's model


def sweep(
    choose: Chooser, scores: Matrix, costs: Matrix, grid: Sequence[float]
) -> list[CurvePoint]:
    """The curve traced by the grid of cost weights (``choose`` routes every row at one
    weight); a weight that routes every row as the previous one did adds no point."""
    curve: list[CurvePoint] = []
    last: npt.NDArray[np.intp] | None = None
    for weight in grid:
        choice = choose(weight)
        if last is None or not np.array_equal(choice, last):
            cost, quality = point_of(choice, scores, costs)
            curve.append(CurvePoint(weight, cost, quality))
        last = choice
    return curve


@dataclass(frozen=True)
class Baselines:
    single: dict[str, Point]  # every model alone
    best_single: str  # highest quality (the cheaper among ties)
    random: Point  # expected value of a uniformly random model
    oracle: Point  # each row's best score, the cheapest model among ties


def baselines(models: Sequence[str], scores: Matrix, costs: Matrix) -> Baselines:
    """Baselines on rows x models ``scores`` and per-call ``costs`` (US$, gaps filled)."""
    per_1k, quality = costs.mean(axis=0) * 1000.0, scores.mean(axis=0)
    single = {m: (float(per_1k[i]), float(quality[i])) for i, m in enumerate(models)}
    best = min(models, key=lambda m: (-single[m][1], single[m][0]))
    top = scores >= scores.max(axis=1, keepdims=True)
    oracle = np.argmin(np.where(top, costs, np.inf), axis=1)
    return Baselines(
        single=single,
        best_single=best,
        random=(float(per_1k.mean()), float(quality.mean())),
        oracle=point_of(oracle, scores, costs),
    )
