"""AIQ on hand-computed curves, the baselines, and `train` / `eval` as the CLI runs them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from router_proxy.selection.artifact import ArtifactError
from router_proxy.selection.knn import KnnSelector
from router_proxy.selection.learned import Vector
from router_proxy.selection.registry import SELECTORS
from router_proxy.training import commands
from router_proxy.training.aiq import (
    aiq,
    baselines,
    choices_at,
    cost_weight_grid,
    shared_axis,
    upper_hull,
)
from router_proxy.training.data import embed_prompts
from router_proxy.training.evaluate import (
    HeldOut,
    evaluate,
    resources_for,
    router_curve,
    selector_from_artifact,
)
from tests.test_knn import MODELS, registered, write_rows

__all__ = ["registered"]  # the autouse fixture: knn registered, private vector cache

# ---- AIQ by hand ----------------------------------------------------------------------


def test_aiq_of_two_points_extended_flat() -> None:
    # Segment 1..3 under (0.5 -> 0.9): 2 x 0.7 = 1.4; flat 3..5 at 0.9: 1.8; / range 4.
    assert aiq([(1, 0.5), (3, 0.9)], 1, 5) == pytest.approx(3.2 / 4)


def test_points_under_the_hull_or_below_an_earlier_point_are_dropped() -> None:
    points = [(1, 0.5), (2, 0.6), (3, 0.9), (4, 0.85), (5, 0.7)]
    # (2, 0.6) is under the segment (1, 0.5)-(3, 0.9), which passes 0.7 there; (4, 0.85)
    # and (5, 0.7) come after 0.9 and are lower.
    assert upper_hull(points) == [(1, 0.5), (3, 0.9)]
    assert aiq(points, 1, 5) == pytest.approx(0.8)
    # A concave dip is bridged: (1, 0.2) is under the line (0, 0)-(2, 1).
    assert upper_hull([(0, 0.0), (1, 0.2), (2, 1.0)]) == [(0, 0.0), (2, 1.0)]
    assert aiq([(0, 0.0), (1, 0.2), (2, 1.0)], 0, 2) == pytest.approx(0.5)
    # Same cost twice: the better point counts.
    assert upper_hull([(1, 0.4), (1, 0.6)]) == [(1, 0.6)]


def test_aiq_on_a_shared_axis() -> None:
    # A router that starts at cost 1 on an axis that starts at 0 has nothing below 1.
    assert aiq([(1, 0.5), (3, 0.9)], 0, 5) == pytest.approx(3.2 / 5)
    # A single point is flat from its cost to the end.
    assert aiq([(2, 0.6)], 0, 4) == pytest.approx(0.6 * 2 / 4)
    assert shared_axis([[(1, 0.5), (3, 0.9)], [(0.5, 0.4), (6, 0.95)]]) == (0.5, 6)
    # No cost range (data without costs): the best quality.
    assert aiq([(0, 0.55), (0, 0.6)], 0, 0) == pytest.approx(0.6)
    assert aiq([], 0, 1) == 0.0


def test_baselines() -> None:
    scores = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=np.float32)
    costs = np.array([[3, 1, 2]] * 3, dtype=np.float32) / np.float32(1000)
    base = baselines(["a", "b", "c"], scores, costs)
    assert base.single["b"] == pytest.approx((1.0, 2 / 3))
    assert base.best_single == "b"
    assert base.random == pytest.approx((2.0, (1 / 3 + 2 / 3 + 1 / 3) / 3))
    # Oracle: row 1 a or b -> b ($1); row 2 b or c -> b ($1); row 3 all 0 -> b ($1).
    assert base.oracle == pytest.approx((1.0, 2 / 3))
    tied = baselines(["x", "y"], np.ones((2, 2), np.float32), np.array([[2, 1]] * 2, np.float32))
    assert tied.best_single == "y"  # equal quality: the cheaper


def test_grid_reaches_the_cheapest_model() -> None:
    predicted = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.7]], dtype=np.float32)
    per_1k = np.array([5.0, 1.0, 0.1], dtype=np.float32)
    grid = cost_weight_grid(predicted, per_1k, points=10)
    assert grid[0] == 0.0
    assert len(grid) == 10
    assert grid == sorted(grid)
    assert list(choices_at(predicted, per_1k, grid[0])) == [0, 1]
    assert list(choices_at(predicted, per_1k, grid[-1])) == [2, 2]
    assert cost_weight_grid(predicted, np.zeros(3, np.float32)) == [0.0]  # no costs


# ---- train and eval through the CLI ----------------------------------------------------


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    return write_rows(tmp_path / "train.jsonl", 25, 3), write_rows(tmp_path / "test.jsonl", 10, 4)


def test_train_then_eval_json(
    tmp_path: Path, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = data
    out = tmp_path / "my-knn"
    assert (
        run(
            [
                "train",
                "--algorithm",
                "knn",
                "--data",
                str(train),
                "--out",
                str(out),
                "--option",
                "k=5",
                "--option",
                "shrink=0.5",
                "--quiet",
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    extra = json.loads((out / "meta.json").read_text())["extra"]
    assert (extra["k"], extra["shrink"]) == (5, 0.5)
    assert run(["eval", "--router", str(out), "--data", str(test), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"routers", "baselines", "aiq"}
    curve = result["routers"]["my-knn"]
    assert all(set(p) == {"cost_per_1k", "quality", "cost_weight"} for p in curve)
    assert curve[0]["cost_weight"] == 0.0
    assert curve[0]["quality"] == pytest.approx(1.0)  # every prompt to its expert
    assert curve[0]["cost_per_1k"] == pytest.approx(10.0)
    assert curve[-1] == {
        "cost_per_1k": pytest.approx(0.1),
        "quality": 0.5,
        "cost_weight": curve[-1]["cost_weight"],
    }
    base = result["baselines"]
    assert set(base) >= {"single", "best_single", "random", "oracle", "zero_router"}
    assert set(base["single"]) == set(MODELS)
    assert base["oracle"] == {"cost_per_1k": pytest.approx(10.0), "quality": 1.0}
    assert base["random"]["quality"] == pytest.approx(0.5)
    # The zero router cannot beat 0.5 anywhere; the router reaches 1.0 at $10.
    assert result["aiq"]["my-knn"] > base["zero_router"]["aiq"] + 0.2


def test_eval_table(
    tmp_path: Path, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = data
    out = tmp_path / "knn"
    assert run(["train", "--algorithm", "knn", "--data", str(train), "--out", str(out)]) == 0
    twice = ["--router", str(out), "--router", str(out)]
    assert run(["eval", *twice, "--data", str(test), "--quiet"]) == 0
    table = capsys.readouterr().out
    for part in (
        "router knn (knn)",
        "router knn#2 (knn)",
        "<- best single",
        "oracle",
        "zero router",
    ):
        assert part in table


def test_plot_written(tmp_path: Path, data: tuple[Path, Path]) -> None:
    pytest.importorskip("matplotlib")
    train, test = data
    out = tmp_path / "knn"
    assert run(["train", "--algorithm", "knn", "--data", str(train), "--out", str(out)]) == 0
    png = tmp_path / "figs" / "curve.png"
    assert run(["eval", "--router", str(out), "--data", str(test), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_reported_not_raised(
    tmp_path: Path, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = data
    assert run(["eval", "--router", str(tmp_path / "none"), "--data", str(test)]) == 1
    assert "no artifact" in capsys.readouterr().err
    assert (
        run(
            [
                "train",
                "--algorithm",
                "knn",
                "--data",
                str(train),
                "--out",
                str(tmp_path / "x"),
                "--option",
                "k=-2",
            ]
        )
        == 1
    )
    assert "k must be" in capsys.readouterr().err


# ---- the evaluation routes as the selector does ----------------------------------------


def test_vectorised_sweep_matches_the_selector_row_by_row(
    tmp_path: Path, data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    out = tmp_path / "knn"
    assert run(["train", "--algorithm", "knn", "--data", str(train), "--out", str(out)]) == 0
    resources = resources_for("static:minilm-l6-v2-m2v-256")
    testset = HeldOut.read(test)
    vectors = embed_prompts([r.prompt for r in testset.rows], resources.encoder.get())
    fast = router_curve(out, resources, vectors, testset, points=12, progress=False)

    class RowByRow(KnnSelector):  # its own rank: evaluation must call it row by row
        def rank(self, embedding: Vector) -> tuple[str, ...]:
            return super().rank(embedding)

    monkeypatch.setitem(SELECTORS, "knn", RowByRow)
    slow = router_curve(out, resources, vectors, testset, points=12, progress=False)
    assert [p.point for p in slow] == [p.point for p in fast]
    assert [p.cost_weight for p in slow] == pytest.approx([p.cost_weight for p in fast])
    assert len(fast) >= 2
    selector = selector_from_artifact(out, resources, cost_weight=0.0)
    assert isinstance(selector, RowByRow)
    assert selector.candidates == MODELS


def test_unknown_algorithm_and_encoder(tmp_path: Path, data: tuple[Path, Path]) -> None:
    train, test = data
    out = tmp_path / "knn"
    assert run(["train", "--algorithm", "knn", "--data", str(train), "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "algorithm": "nope"}))
    with pytest.raises(ArtifactError, match="no learned selector"):
        evaluate([out], test, progress=False)
    (out / "meta.json").write_text(json.dumps({**meta, "encoder": "static:elsewhere"}))
    with pytest.raises(ArtifactError, match="--embeddings-model"):
        evaluate([out], test, progress=False)
