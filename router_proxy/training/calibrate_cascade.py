"""``router-proxy calibrate`` for a trained cascade: the ``budget_per_1k`` knob that
meets a dollar budget on the user's own data.

The knob already is a budget, but one planned on the training rows: on other traffic the
same plans spend a little more or less (how often the cheap stage agrees differs), and
the quality curve between two knobs is not smooth. So the knob is searched, not
assumed: every knob of ``cascade_curve`` (the hull's vertices and a dense grid between
them) is replayed on the calibration rows, every call paid, and the best quality spending
at most the target wins (then the lower spend, then the lower knob). Calibrate on rows
the cascade was not trained on.
"""

from __future__ import annotations

from pathlib import Path

from router_proxy.selection.artifact import read_meta
from router_proxy.training.calibrate import RoutePoint, choose, decimal_text
from router_proxy.training.cascade_eval import cascade_curve
from router_proxy.training.data import embed_prompts
from router_proxy.training.evaluate import HeldOut, resources_for

# Knobs replayed between the hull's vertices: finer than eval's plot, still seconds.
CALIBRATION_POINTS = 200


def cascade_points(
    artifact_dir: str | Path,
    data_path: str | Path,
    *,
    encoder_model: str | None = None,
    progress: bool = False,
) -> list[RoutePoint]:
    """Quality and spend of the cascade on ``data_path`` at each knob (``cost_weight``
    holds the knob, US$ per 1k queries)."""
    resources = resources_for(str(read_meta(artifact_dir).get("encoder")), encoder_model)
    data = HeldOut.read(data_path)
    try:
        vectors = embed_prompts(
            [r.prompt for r in data.rows], resources.encoder.get(), progress=progress
        )
    finally:
        resources.encoder.close()
    curve = cascade_curve(artifact_dir, vectors, data, CALIBRATION_POINTS)
    return [RoutePoint(p.cost_weight, p.quality, p.cost_per_1k) for p in curve.points]


def calibrate_budget(
    artifact_dir: str | Path, data_path: str | Path, target_cost_per_1k: float
) -> RoutePoint:
    """The knob whose cascade spends at most the target on ``data_path``, with the best
    quality (``cost_weight`` holds the knob)."""
    return choose(cascade_points(artifact_dir, data_path), target_cost_per_1k, "budget_per_1k")


def budget_snippet(artifact_dir: str | Path, budget_per_1k: float) -> str:
    """The ``route.params`` line to paste into a cascade decision."""
    return f"params: {{artifact: {artifact_dir}, budget_per_1k: {decimal_text(budget_per_1k)}}}"
