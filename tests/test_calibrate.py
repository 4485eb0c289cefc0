"""``router-proxy calibrate``: the exact routing curve, budgets met, the command line."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.selection.mf import MfSelector
from router_proxy.selection.registry import SELECTORS
from router_proxy.training.calibrate import (
    CalibrationError,
    Matrix,
    RoutePoint,
    calibrate,
    choose,
    curve_for,
    load_router,
    params_snippet,
    register,
    routing_curve,
)
from router_proxy.training.data import TrainingData
from router_proxy.training.mf_train import train_mf
from tests.test_mf import FRESH_WORDS, QUICK, TRAIN_WORDS, synthetic_rows, write_jsonl


@contextmanager
def trained_mf(
    tmp_path_factory: pytest.TempPathFactory, fresh_per_word: int
) -> Iterator[tuple[Path, Path]]:
    """An mf artifact trained on the synthetic data, and a fresh data file to calibrate on
    (``fresh_per_word`` rows per word)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROUTER_PROXY_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setitem(SELECTORS, "mf", MfSelector)  # registered by the registry line
        root = tmp_path_factory.mktemp("calibrate")
        train = write_jsonl(root / "train.jsonl", synthetic_rows(TRAIN_WORDS, 3))
        fresh = write_jsonl(
            root / "fresh.jsonl", synthetic_rows(FRESH_WORDS, fresh_per_word, seed=5)
        )
        shared = SharedEncoder(EmbeddingsConfig())
        train_mf(TrainingData.load([train], shared.get(), progress=False), QUICK).save(root / "mf")
        yield root / "mf", fresh


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    with trained_mf(tmp_path_factory, fresh_per_word=2) as paths:
        yield paths


def brute_force(
    quality: Matrix, per_1k: Matrix, scores: Matrix, costs: Matrix, weight: float
) -> tuple[float, float]:
    pick = np.argmax(quality - weight * per_1k[None, :] - 1e-12 * per_1k[None, :], axis=1)
    rows = np.arange(len(quality))
    return float(scores[rows, pick].mean()), float(costs[rows, pick].mean())


def test_curve_is_exact() -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        n, m = 40, 5
        quality = rng.random((n, m))
        per_1k = rng.random(m) * 5
        per_1k[3] = per_1k[1]  # two models at the same price
        scores = (rng.random((n, m)) > 0.5).astype(float)
        costs = per_1k[None, :] * rng.uniform(0.5, 1.5, (n, m))
        points = routing_curve(quality, per_1k, scores, costs)
        assert points[0].low == 0.0
        assert points[-1].high == float("inf")
        for point in points:
            assert point.low <= point.cost_weight < point.high
            for weight in (point.cost_weight, (point.low + min(point.high, point.low + 1)) / 2):
                q, c = brute_force(quality, per_1k, scores, costs, weight)
                assert q == pytest.approx(point.quality)
                assert c == pytest.approx(point.cost_per_1k)
        # The last interval is where everything goes to the cheapest model(s).
        _, cheapest = brute_force(quality, per_1k, scores, costs, 1e9)
        assert points[-1].cost_per_1k == pytest.approx(cheapest)


def test_choose_scans_non_monotonic_curves() -> None:
    points = [
        RoutePoint(0.0, 0.9, 5.0, 0.0, 0.1),
        RoutePoint(0.2, 0.7, 1.5, 0.1, 0.3),  # cheaper than the next point, and worse
        RoutePoint(0.5, 0.8, 1.8, 0.3, 1.0),
        RoutePoint(2.0, 0.6, 0.5, 1.0, float("inf")),
    ]
    assert choose(points, 2.0).cost_weight == 0.5
    assert choose(points, 1.6).cost_weight == 0.2
    assert choose(points, 9.0).cost_weight == 0.0
    with pytest.raises(CalibrationError, match=r"cheapest routing spends \$0.5"):
        choose(points, 0.1)


def test_calibrate_meets_budgets(setup: tuple[Path, Path]) -> None:
    artifact, fresh = setup
    # $3/1k affords the coder on code prompts and the linguist on translations: quality 1.
    # $1/1k does not: code prompts go to the generalist ($0.2, right half the time).
    for target, best in ((3.5, 1.0), (1.0, 0.75)):
        weight = calibrate(artifact, fresh, target)
        points = curve_for(artifact, fresh)
        chosen = next(p for p in points if p.low <= weight < p.high)
        assert chosen.cost_per_1k <= target
        assert chosen.quality == pytest.approx(best, abs=0.1)
        assert chosen.quality == max(p.quality for p in points if p.cost_per_1k <= target)
    with pytest.raises(CalibrationError):
        calibrate(artifact, fresh, 0.1)  # below the cheapest model


def test_command_line(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    artifact, fresh = setup
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["calibrate", "--router", str(artifact), "--data", str(fresh), "--target-cost-per-1k", "1"]
    )
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "cost_weight:" in out
    assert "quality:" in out
    assert f"params: {{artifact: {artifact}, cost_weight: " in out
    args = parser.parse_args(
        [
            "calibrate",
            "--router",
            str(artifact),
            "--data",
            str(fresh),
            "--target-cost-per-1k",
            "0.01",
        ]
    )
    assert args.handler(args) == 1
    assert "no cost_weight spends at most" in capsys.readouterr().err


def test_router_from_artifact_alone(setup: tuple[Path, Path]) -> None:
    artifact, _ = setup
    router = load_router(artifact)
    assert router.candidates == ("coder", "linguist", "generalist")
    assert router.params.cost_weight == 0.0
    assert (
        params_snippet("artifacts/mf", 0.05)
        == "params: {artifact: artifacts/mf, cost_weight: 0.05}"
    )


def test_candidates_subset_and_unknown_models(setup: tuple[Path, Path]) -> None:
    artifact, fresh = setup
    points = curve_for(artifact, fresh, candidates=["linguist", "generalist"])
    # Without the coder, code prompts go to the generalist (right half the time).
    assert points[0].quality == pytest.approx(0.75, abs=0.1)
    assert points[0].cost_per_1k <= 1.0
    with pytest.raises(CalibrationError, match="does not know"):
        curve_for(artifact, fresh, candidates=["gpt-9"])
