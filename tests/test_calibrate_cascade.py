"""``router-proxy calibrate`` on a trained cascade: the ``budget_per_1k`` knob that
meets a dollar budget on fresh rows, checked by serving that knob and replaying it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from router_proxy.selection.cascade_artifact import CascadeArtifact
from router_proxy.training.calibrate import CalibrationError, register
from router_proxy.training.calibrate_cascade import budget_snippet, calibrate_budget
from router_proxy.training.cascade_sim import AnswerTable, replay, table_agreement
from router_proxy.training.cascade_train import train_cascade
from router_proxy.training.data import TrainingData
from router_proxy.training.evaluate import HeldOut
from tests.test_cascade_train import COST, encoder, write_rows


@pytest.fixture(autouse=True)
def private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROUTER_PROXY_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path]:
    """A cascade trained on one sample, and fresh rows of the same skills."""
    data = TrainingData.load([write_rows(tmp_path / "train.jsonl", 120, 1)], encoder())
    artifact = train_cascade(data, {}).save(tmp_path / "cascade")
    return artifact, write_rows(tmp_path / "fresh.jsonl", 40, 11)


def served(artifact_dir: Path, data: Path, budget: float) -> tuple[float, float]:
    """Quality and US$ per 1k of the rows as the gateway would route them at ``budget``:
    each prompt's stages from its own embedding, replayed on its recorded answers."""
    artifact = CascadeArtifact.load(artifact_dir)
    test = HeldOut.read(data)
    vectors = encoder().encode([r.prompt for r in test.rows])
    table = AnswerTable(test.rows)
    column = {m: test.models.index(m) for m in artifact.models}
    quality = cost = 0.0
    for r, vector in enumerate(vectors):
        plan = artifact.stages(np.asarray(vector, dtype=np.float32), budget)
        out = replay(plan, table_agreement(table), [r], test.scores, test.costs, column)
        quality, cost = quality + float(out.quality[0]), cost + float(out.cost[0])
    return quality / len(test.rows), cost * 1000.0 / len(test.rows)


def test_the_knob_found_spends_at_most_the_target(trained: tuple[Path, Path]) -> None:
    artifact, fresh = trained
    full_quality, full_cost = served(artifact, fresh, 100.0)
    assert full_quality == pytest.approx(1.0)  # arithmetic escalates to E on a split
    # Between the cheapest plans and the whole cascade: a knob that spends less.
    target = full_cost * 0.7
    point = calibrate_budget(artifact, fresh, target)
    quality, cost = served(artifact, fresh, point.cost_weight)
    assert cost <= target + 1e-9
    assert (quality, cost) == pytest.approx((point.quality, point.cost_per_1k))
    assert quality < full_quality  # the target really bound it
    # The whole cascade fits a target above its spend: the best quality there is.
    assert calibrate_budget(artifact, fresh, full_cost * 1.01).quality == pytest.approx(1.0)
    # Below the cheapest plan nothing fits: a clear error, never a knob that overspends.
    cheapest = min(COST.values()) * 1000.0
    with pytest.raises(CalibrationError, match="no budget_per_1k spends at most"):
        calibrate_budget(artifact, fresh, cheapest / 2)


def test_command_line(trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    artifact, fresh = trained
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    base = ["calibrate", "--router", str(artifact), "--data", str(fresh)]
    args = parser.parse_args([*base, "--target-cost-per-1k", "100"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    knob = float(out.split("budget_per_1k:")[1].split()[0])
    assert budget_snippet(artifact, knob) in out
    assert "quality:       1.0000" in out
    args = parser.parse_args([*base, "--target-cost-per-1k", "5", "--candidates", "E,c1"])
    assert args.handler(args) == 1
    assert "--candidates does not apply" in capsys.readouterr().err
    args = parser.parse_args([*base, "--target-cost-per-1k", "0.01"])
    assert args.handler(args) == 1
    assert "no budget_per_1k spends at most" in capsys.readouterr().err
