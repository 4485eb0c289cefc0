"""Quality against US$ per 1,000 queries, as a PNG (``router-proxy eval --plot``).

Each router: its swept points and its non-decreasing hull (solid, extended flat to the
end of the shared axis, dashed), AIQ in the legend. Single models are grey dots with
their names; the zero router (the hull of the single models) is a dotted grey line; the
best single model, random choice and the oracle are marked. The cost axis is
logarithmic when costs span more than a factor of 20.

Needs matplotlib (the ``train`` extra); it runs headless (Agg backend).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from router_proxy.training.aiq import Point, upper_hull
from router_proxy.training.evaluate import Evaluation
from router_proxy.training.extra import missing

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def _hull_line(points: list[Point], high: float) -> tuple[list[Point], list[Point]]:
    """The hull, each segment cut in 16 so it keeps its (linear-cost) shape on a log axis,
    and its flat extension to ``high``."""
    hull = upper_hull(points)
    tail = [hull[-1], (high, hull[-1][1])] if hull and hull[-1][0] < high else []
    dense = hull[:1]
    for (c0, q0), (c1, q1) in pairwise(hull):
        dense += [(c0 + (c1 - c0) * t, q0 + (q1 - q0) * t) for t in np.linspace(0, 1, 17)[1:]]
    return dense, tail


def _draw_baselines(ax: Axes, evaluation: Evaluation) -> None:
    base, high = evaluation.baselines, evaluation.axis[1]
    for model, (cost, quality) in base.single.items():
        ax.scatter([cost], [quality], color="0.55", s=18, zorder=3)
        ax.annotate(
            _short(model),
            (cost, quality),
            fontsize=7,
            color="0.35",
            xytext=(4, -3),
            textcoords="offset points",
        )
    hull, tail = _hull_line(list(base.single.values()), high)
    ax.plot(
        *zip(*hull, *tail, strict=True),
        linestyle=":",
        color="0.5",
        label=f"zero router (single-model hull), AIQ {evaluation.zero_router_aiq:.3f}",
    )
    best = base.single[base.best_single]
    ax.scatter(
        [best[0]],
        [best[1]],
        s=140,
        facecolors="none",
        edgecolors="black",
        linewidths=1.5,
        zorder=4,
        label=f"best single: {_short(base.best_single)} ({best[1]:.3f})",
    )
    ax.scatter(
        [base.random[0]],
        [base.random[1]],
        marker="x",
        s=70,
        color="tab:red",
        zorder=4,
        label=f"random ({base.random[1]:.3f})",
    )
    ax.scatter(
        [base.oracle[0]],
        [base.oracle[1]],
        marker="*",
        s=160,
        color="gold",
        edgecolors="black",
        zorder=4,
        label=f"oracle ({base.oracle[1]:.3f} at ${base.oracle[0]:.2f})",
    )


def plot(evaluation: Evaluation, out: str | Path, title: str | None = None) -> Path:
    """Write the figure to ``out`` (PNG) and return its path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise missing("matplotlib", "router-proxy eval --plot") from None
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    low, high = evaluation.axis
    for router in evaluation.routers:
        points = [p.point for p in router.points]
        hull, tail = _hull_line(points, high)
        line = ax.plot(
            *zip(*hull, strict=True),
            linewidth=2,
            zorder=5,
            label=f"{router.name} ({router.algorithm}), AIQ {router.aiq:.3f}",
        )
        colour = line[0].get_color()
        if tail:
            ax.plot(*zip(*tail, strict=True), linestyle="--", linewidth=1, color=colour)
        costs, qualities = [c for c, _ in points], [q for _, q in points]
        ax.scatter(costs, qualities, s=14, color=colour, alpha=0.6, zorder=5)
    _draw_baselines(ax, evaluation)
    if low > 0 and high / low > 20:
        ax.set_xscale("log")
    ax.set_xlabel("US$ per 1,000 queries")
    ax.set_ylabel("quality (mean score)")
    ax.set_title(title or f"Quality vs cost on {evaluation.rows} held-out prompts")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
