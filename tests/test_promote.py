"""``router-proxy promote``: the gate (quality at the budget, by a margin, judged by
consensus), the canary edit of the policy, and the ``split`` selector that serves it."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from router_proxy.cli import main
from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config, load_config_text
from router_proxy.context import RequestContext
from router_proxy.pipeline import Pipeline
from router_proxy.selection.split import SplitSelector
from router_proxy.training.aiq import CurvePoint
from router_proxy.training.promote import HELD_BACK, at_budget, judge
from tests.support.records import MODELS, records, write_jsonl


def curve(*points: tuple[float, float]) -> list[CurvePoint]:
    return [CurvePoint(float(i), cost, quality) for i, (cost, quality) in enumerate(points)]


def test_quality_at_the_budget_is_the_best_point_within_it() -> None:
    points = curve((0.2, 0.5), (1.0, 0.7), (3.0, 0.9))
    assert at_budget(points, 2.5) == points[1]
    assert at_budget(points, 0.1) is None
    assert at_budget(points, 5.0) == points[2]


def test_the_gate_needs_the_margin() -> None:
    serving = curve((1.0, 0.70))
    assert judge(serving, curve((0.9, 0.73)), 2.5, 0.02).promote
    held = judge(serving, curve((0.9, 0.71)), 2.5, 0.02)
    assert not held.promote
    assert "< margin 0.02" in held.why
    too_dear = judge(serving, curve((3.0, 0.99)), 2.5, 0.02)
    assert not too_dear.promote
    assert "no point within" in too_dear.why


POLICY = """\
# the policy a platform team keeps: comments survive promote --write
providers: {{mock: {{type: mock}}}}
models: {{strong: {{provider: mock}}, mathy: {{provider: mock}}, guess: {{provider: mock}}}}
decisions:
  - name: default  # live traffic
    when: true
    route:
      candidates: [strong, mathy, guess]
      algorithm: knn
      params: {{artifact: "{serving}"}}
"""


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("promote")
    recs, _ = records(240)
    write_jsonl(folder / "records.jsonl", recs)
    held, labels = records(90, seed=5)
    write_jsonl(folder / "held-records.jsonl", held)
    write_jsonl(folder / "labels.jsonl", labels)
    # Serving: a knn trained on bad labels (it believes `guess` is best).
    bad = [
        {
            "id": f"b{i}",
            "prompt": r["prompt"],
            "scores": {"guess": 1.0, "strong": 0.0, "mathy": 0.0},
        }
        for i, r in enumerate(labels)
    ]
    write_jsonl(folder / "bad.jsonl", bad)
    base = ["--quiet"]
    assert (
        main(
            [
                "train",
                "--algorithm",
                "knn",
                "--data",
                str(folder / "bad.jsonl"),
                "--out",
                str(folder / "serving"),
                *base,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--algorithm",
                "cascal",
                "--records",
                str(folder / "records.jsonl"),
                "--out",
                str(folder / "candidate"),
                *base,
            ]
        )
        == 0
    )
    held_wide = folder / "held.jsonl"
    assert (
        main(
            [
                "train",
                "--algorithm",
                "cascal",
                "--records",
                str(folder / "held-records.jsonl"),
                "--out",
                str(folder / "unused"),
                "--wide-out",
                str(held_wide),
                *base,
            ]
        )
        == 0
    )
    (folder / "policy.yaml").write_text(POLICY.format(serving=folder / "serving"))
    return folder


def promote(
    folder: Path, *extra: str, candidate: str = "candidate", serving: str = "serving"
) -> int:
    return main(
        [
            "promote",
            "--candidate",
            str(folder / candidate),
            "--serving",
            str(folder / serving),
            "--data",
            str(folder / "held.jsonl"),
            "--budget-per-1k",
            "5",
            "--margin",
            "0.05",
            "--labels",
            str(folder / "labels.jsonl"),
            "--quiet",
            *extra,
        ]
    )


def test_promote_writes_a_canary_the_reload_can_load(
    artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = artifacts / "policy.yaml"
    before = policy.read_text()
    assert promote(artifacts, "--policy", str(policy), "--decision", "default") == 0
    out = capsys.readouterr().out
    assert "PROMOTE:" in out
    assert "agrees with true labels" in out
    assert "algorithm: split" in out  # the edit, shown as a diff
    assert policy.read_text() == before  # nothing written without --write
    code = promote(
        artifacts, "--policy", str(policy), "--decision", "default", "--canary", "0.25", "--write"
    )
    assert code == 0, capsys.readouterr().err
    text = policy.read_text()
    assert "# live traffic" in text  # comments kept
    config, _ = load_config(policy)
    route = config.decisions[0].route
    assert route.algorithm == "split"
    arms = route.params["arms"]
    assert [a["weight"] for a in arms] == [0.75, 0.25]
    assert arms[0]["algorithm"] == "knn"
    assert arms[1]["algorithm"] == "cascal"
    assert arms[1]["params"]["artifact"] == str(artifacts / "candidate")
    # It serves: both arms take requests.
    pipeline = Pipeline.build(config)
    for i in range(40):
        plan = asyncio.run(pipeline.route(RequestContext.from_prompt(f"Question {i}")))
        assert plan.model in MODELS
    selector = pipeline.decisions[0].selector
    assert isinstance(selector, SplitSelector)
    assert all(n > 0 for n in selector.drawn)


def test_a_candidate_that_does_not_beat_serving_is_held_back(
    artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = artifacts / "policy.yaml"
    before = policy.read_text()
    code = promote(
        artifacts,
        "--policy",
        str(policy),
        "--decision",
        "default",
        "--write",
        candidate="serving",
        serving="candidate",
    )
    assert code == HELD_BACK
    assert "HOLD BACK:" in capsys.readouterr().out
    assert policy.read_text() == before


SPLIT = """
providers: {mock: {type: mock}}
models: {a: {provider: mock}, b: {provider: mock}}
decisions:
  - name: default
    when: true
    route:
      candidates: [a, b]
      algorithm: split
      params: PARAMS
"""


def test_split_checks_its_arms() -> None:
    policy = SPLIT.replace(
        "PARAMS",
        "{arms: [{weight: 1, algorithm: nope}, "
        "{weight: 1, algorithm: weighted, params: {weights: {c: 1}}}]}",
    )
    with pytest.raises(ConfigError, match=r"arms\.0") as info:
        load_config_text(policy)
    assert "arms.1.params" in str(info.value)


def test_split_draws_arms_by_weight() -> None:
    policy = SPLIT.replace(
        "PARAMS",
        "{seed: 1, arms: [{weight: 3, algorithm: static}, "
        "{weight: 1, algorithm: weighted, params: {weights: {a: 0}}}]}",
    )
    config, _ = load_config_text(policy)
    pipeline = Pipeline.build(config)
    models = Counter(
        asyncio.run(pipeline.route(RequestContext.from_prompt("x"))).model for _ in range(400)
    )
    assert models["a"] > models["b"] > 0  # static says a; the 1-in-4 arm always says b
