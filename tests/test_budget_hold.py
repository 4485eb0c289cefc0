"""The live budget hold of a trained cascade (``hold_budget``): the controller on
streams of costs (selection/budget_hold.py), its config, and its state across a hot
reload. The gateway holding a budget on skewed traffic: test_budget_hold_serving.py."""

from __future__ import annotations

import asyncio
import itertools
import random
import shutil
from pathlib import Path

import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.pipeline import Pipeline
from router_proxy.selection.budget_hold import MAX_STEP, BudgetHold, HoldBudgetConfig
from router_proxy.selection.cascade import CascadeParams, CascadeSelector
from tests.test_cascade_artifact_serving import artifact, policy

__all__ = ["artifact"]  # the trained artifact fixture, shared


def run(
    hold: BudgetHold,
    requests: int,
    spend: float,
    floor: float = 0.0,
    noise: float = 0.5,
    seed: int = 0,
) -> list[float]:
    """Feed ``requests`` requests whose spend per 1k is ``floor + spend x knob`` times a
    random factor of mean 1 (``noise``: its spread): the correction after each."""
    rng = random.Random(seed)
    corrections = []
    for _ in range(requests):
        knob = hold.knob
        per_1k = (floor + spend * knob) * rng.uniform(1 - noise, 1 + noise)
        hold.observe(per_1k / 1000, knob)
        corrections.append(hold.state.correction)
    return corrections


def spent_at(hold: BudgetHold, spend: float, floor: float = 0.0) -> float:
    """What the traffic of ``run`` spends per 1k, on average, at the hold's knob now."""
    return floor + spend * hold.knob


def test_costlier_traffic_is_held_to_the_budget() -> None:
    hold = BudgetHold(2.5, HoldBudgetConfig())
    run(hold, 3000, spend=1.6)  # the knob spends 60% more than planned
    assert spent_at(hold, 1.6) == pytest.approx(2.5, rel=0.05)
    assert hold.state.correction == pytest.approx(1 / 1.6, rel=0.05)
    assert hold.state.spend_per_1k == pytest.approx(2.5, rel=0.1)  # what it reports


def test_cheaper_traffic_gets_a_higher_knob() -> None:
    hold = BudgetHold(1.5, HoldBudgetConfig(window=200, min_requests=50))
    run(hold, 2000, spend=0.5, floor=0.3)  # a floor: cheap plans cost this at any knob
    assert hold.knob > 1.5
    assert spent_at(hold, 0.5, floor=0.3) == pytest.approx(1.5, rel=0.05)


def test_the_knob_does_not_move_before_min_requests() -> None:
    hold = BudgetHold(2.5, HoldBudgetConfig(min_requests=100))
    corrections = run(hold, 99, spend=3.0)
    assert set(corrections) == {1.0}
    assert hold.knob == 2.5
    run(hold, 1, spend=3.0)
    assert hold.state.correction < 1.0


def test_the_correction_moves_a_bounded_step_and_stays_within_bounds() -> None:
    hold = BudgetHold(2.0, HoldBudgetConfig(window=50, min_requests=0, max_correction=4))
    corrections = [1.0, *run(hold, 1500, spend=20.0, noise=0.9)]  # ten times too dear
    steps = [b / a for a, b in itertools.pairwise(corrections)]
    assert all(1 - MAX_STEP - 1e-9 <= s <= 1 + MAX_STEP + 1e-9 for s in steps)
    assert min(corrections) == pytest.approx(0.25)  # it wants 0.1: held at the bound
    assert all(0.25 - 1e-12 <= c <= 4 + 1e-12 for c in corrections)
    run(hold, 1500, spend=0.01)  # then far too cheap: up to the other bound, no further
    assert hold.state.correction == pytest.approx(4.0)


def test_free_traffic_raises_the_knob_to_its_bound() -> None:
    hold = BudgetHold(1.0, HoldBudgetConfig(min_requests=0, max_correction=2))
    for _ in range(200):
        hold.observe(0.0, hold.knob)  # models without prices: nothing is ever spent
    assert hold.knob == pytest.approx(2.0)


def test_it_converges_without_oscillating() -> None:
    """After the correction first comes within 5% of its goal it stays within 10%."""
    hold = BudgetHold(2.5, HoldBudgetConfig(window=100, min_requests=20))
    corrections = run(hold, 3000, spend=2.0, noise=0.2)
    goal = 0.5
    near = next(i for i, c in enumerate(corrections) if abs(c / goal - 1) < 0.05)
    assert all(abs(c / goal - 1) < 0.1 for c in corrections[near:])


def test_hold_budget_parses_as_true_or_its_fields(artifact: Path) -> None:
    def hold(value: object) -> HoldBudgetConfig | None:
        params = {"artifact": artifact, "budget_per_1k": 1.0, "hold_budget": value}
        return CascadeParams.model_validate(params).hold_budget

    assert CascadeParams(artifact=artifact, budget_per_1k=1.0).hold_budget is None
    assert hold(True) == HoldBudgetConfig()
    assert hold(False) is None
    assert hold({"window": 50}) == HoldBudgetConfig(window=50)


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ("{stages: [[c1, c2], [E]], hold_budget: true}", "hold_budget"),
        ("{artifact: ART, budget_per_1k: 0, hold_budget: true}", "hold_budget"),
        ("{artifact: ART, budget_per_1k: 1, hold_budget: {window: 1}}", "hold_budget.window"),
        ("{artifact: ART, budget_per_1k: 1, hold_budget: {windw: 50}}", "hold_budget.windw"),
    ],
)
def test_a_hold_without_an_artifact_budget_or_with_bad_fields_is_refused(
    artifact: Path, params: str, where: str
) -> None:
    text = policy(artifact).replace(
        f"params: {{artifact: {artifact}, budget_per_1k: 100.0}}",
        "params: " + params.replace("ART", str(artifact)),
    )
    with pytest.raises(ConfigError, match=rf"decisions\[0\]\.route\.params\.{where}") as exc:
        load_config_text(text, env={})
    if where == "hold_budget":
        assert "needs `artifact` and a `budget_per_1k` above 0" in str(exc.value)


def held_policy(artifact: Path, budget: float = 1.0, hold: str = "true") -> str:
    return policy(artifact, budget).replace(
        f"budget_per_1k: {budget}}}", f"budget_per_1k: {budget}, hold_budget: {hold}}}"
    )


def _hold(pipeline: Pipeline) -> BudgetHold:
    selector = pipeline.decisions[0].selector
    assert isinstance(selector, CascadeSelector)
    assert selector.hold is not None
    return selector.hold


def test_a_reload_of_the_same_decision_keeps_the_holds_state(artifact: Path) -> None:
    config, _ = load_config_text(held_policy(artifact), env={})
    first = Pipeline.build(config)
    run(_hold(first), 300, spend=2.0)
    learned = _hold(first).state.correction
    assert learned < 1.0
    again, _ = load_config_text(held_policy(artifact), env={})
    kept = Pipeline.build(again, previous=first)
    assert _hold(kept).state is _hold(first).state  # in-flight requests still count
    assert _hold(kept).knob == pytest.approx(learned)
    for changed in (
        held_policy(artifact, budget=2.0),
        held_policy(artifact, hold="{window: 100}"),
    ):
        other, _ = load_config_text(changed, env={})
        fresh = Pipeline.build(other, previous=first)
        assert _hold(fresh).state.requests == 0
        assert _hold(fresh).state.correction == 1.0


def test_a_reload_with_a_retrained_artifact_starts_afresh(artifact: Path, tmp_path: Path) -> None:
    from router_proxy.training.cascade_train import train_cascade
    from router_proxy.training.data import TrainingData
    from tests.test_cascade_train import encoder, write_rows

    served = tmp_path / "served"
    shutil.copytree(artifact, served)
    config, _ = load_config_text(held_policy(served), env={})
    first = Pipeline.build(config)
    run(_hold(first), 300, spend=2.0)
    data = TrainingData.load([write_rows(tmp_path / "train.jsonl", 60, 5)], encoder())
    train_cascade(data, {}).save(tmp_path / "retrained")
    for name in ("meta.json", "arrays.npz"):  # the same path and params, new plans
        shutil.copy(tmp_path / "retrained" / name, served / name)
    again, _ = load_config_text(held_policy(served), env={})
    fresh = Pipeline.build(again, previous=first)
    assert _hold(fresh).state.requests == 0


def test_the_plan_carries_the_knob_it_was_chosen_at(artifact: Path) -> None:
    config, _ = load_config_text(held_policy(artifact, budget=1.0), env={})
    pipeline = Pipeline.build(config)
    hold = _hold(pipeline)
    hold.state.correction = 0.5
    plan = asyncio.run(pipeline.route(RequestContext.from_prompt("What is 120 plus 45?")))
    assert plan.calls is not None
    assert plan.calls.budget_per_1k == pytest.approx(0.5)
    assert plan.calls.hold is hold
    shown = plan.to_dict()["calls"]
    assert shown["budget_per_1k"] == pytest.approx(0.5)
    assert shown["hold"]["effective_per_1k"] == pytest.approx(0.5)
    assert shown["hold"]["budget_per_1k"] == 1.0


def test_a_runtime_reload_hands_the_hold_on(artifact: Path) -> None:
    from router_proxy.runtime import Runtime

    config, _ = load_config_text(held_policy(artifact), env={})
    first = Runtime.build(config)
    run(_hold(first.pipeline), 150, spend=2.0)
    reloaded = Runtime.build(config, previous=first)
    assert _hold(reloaded.pipeline).state is _hold(first.pipeline).state
