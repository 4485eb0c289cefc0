"""``router-proxy calibrate`` with tie-prone predictions (knn's averaged scores take few
values): the printed interval is non-empty and holds the printed weight, and serving that
weight routes the data as reported.

Rounding used to split a tie into a sliver interval such as ``[0.1008, 0.1008)``, a
routing no served weight gives, which calibrate could pick and print.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from router_proxy.cli import main
from router_proxy.selection.artifact import load_artifact
from router_proxy.selection.learned import LearnedSelector
from router_proxy.selection.mf import MfSelector
from router_proxy.selection.registry import SELECTORS
from router_proxy.training.calibrate import Matrix, RoutePoint, interval_text, routing_curve
from router_proxy.training.evaluate import HeldOut
from tests.test_calibrate import trained_mf

LINE = re.compile(r"cost_weight: (\S+)  \(any in ([\[(])(\S+), (\S+)\)\)")


def tied(rows: int, models: int, seed: int) -> Matrix:
    """Predictions as a 6-neighbour knn makes them: multiples of 1/6."""
    return np.random.default_rng(seed).integers(0, 7, (rows, models)) / 6


def pick(quality: Matrix, per_1k: Matrix, weight: float) -> npt.NDArray[np.intp]:
    """The served choice at ``weight`` (the cheapest among exact ties, as calibrate has it)."""
    return np.asarray(np.argmax(quality - (weight + 1e-12) * per_1k[None, :], axis=1))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """An mf artifact and 180 fresh rows to calibrate on."""
    with trained_mf(tmp_path_factory, fresh_per_word=10) as paths:
        yield paths


def test_printed_interval_holds_the_weight_that_routes_as_reported(
    setup: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact, fresh = setup
    data = HeldOut.read(fresh)
    models = load_artifact(artifact, "mf").models
    columns = data.columns(models)
    per_1k = np.asarray(load_artifact(artifact, "mf").arrays["cost_per_1k"], dtype=np.float64)
    quality = tied(len(data.rows), len(models), seed=3)
    monkeypatch.setitem(SELECTORS, "mf", MfSelector)
    monkeypatch.setattr(LearnedSelector, "predict_batch", lambda self, vectors: quality)
    rows = np.arange(len(data.rows))
    for target in np.linspace(0.25, 4.5, 18):
        argv = ["calibrate", "--router", str(artifact), "--data", str(fresh)]
        assert main([*argv, "--target-cost-per-1k", f"{target:.4f}"]) == 0
        out = capsys.readouterr().out
        found = LINE.search(out)
        assert found, out
        weight, low, high = float(found[1]), float(found[3]), float(found[4])
        assert low < high, out
        assert weight < high, out
        assert low <= weight if found[2] == "[" else low < weight, out
        # Serving the printed weight routes the rows at the printed quality and spend.
        choice = pick(quality, per_1k, weight)
        spend = float(data.costs[rows, columns[choice]].mean()) * 1000
        score = float(data.scores[rows, columns[choice]].mean())
        assert f"quality:     {score:.4f}" in out
        assert f"$/1k:        {spend:.4f}" in out
        assert spend <= target + 1e-9


def test_no_sliver_intervals_from_rounding() -> None:
    """Three models' lines meeting at one weight (common when predictions take few
    values) used to leave intervals one float wide between the rounded crossings."""
    rng = np.random.default_rng(0)
    per_1k = np.array([3.0, 1.2, 0.6, 0.2])
    for seed in range(20):
        quality = tied(400, 4, seed)
        scores = (rng.random(quality.shape) > 0.5).astype(float)
        costs = per_1k[None, :] * rng.uniform(0.5, 1.5, quality.shape)
        points = routing_curve(quality, per_1k, scores, costs)
        for point in points:
            assert point.high > point.low * (1 + 1e-6), point
            assert point.low < point.cost_weight < point.high or point.cost_weight == 0.0
            for weight in (point.cost_weight, (point.low + min(point.high, point.low + 1)) / 2):
                choice = pick(quality, per_1k, weight)
                rows = np.arange(len(quality))
                assert scores[rows, choice].mean() == pytest.approx(point.quality)
                assert costs[rows, choice].mean() == pytest.approx(point.cost_per_1k)


def test_interval_text_rounds_inward_to_the_digits_needed() -> None:
    assert interval_text(RoutePoint(0.0, 1, 1, 0.0, 0.12239)) == "[0, 0.1223)"
    narrow = RoutePoint(0.100825, 1, 1, 0.10081234, 0.10083999)
    assert interval_text(narrow) == "(0.10082, 0.10083)"
    assert interval_text(RoutePoint(0.97, 1, 1, 0.64714, float("inf"))) == "(0.6472, inf)"
