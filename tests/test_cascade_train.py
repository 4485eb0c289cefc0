"""The cascade trainer, its artifact and its evaluation on rows with known skills.

Two kinds of prompt. Arithmetic: two cheap models (c1, c2) both answer easy prompts
right and split on hard ones (one right, one wrong, at random); the expensive model E is
always right. Law (multiple choice): a third cheap model, c3, is always right; c1 and c2
guess. The cascade to learn: arithmetic -> ((c1, c2), (E,)), law -> ((c3,),).
"""

from __future__ import annotations

import argparse
import json
import random
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router_proxy.answers.extract import CODE_SIMILARITY
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.static import StaticEncoder
from router_proxy.selection.artifact import ArtifactError
from router_proxy.selection.cascade_artifact import (
    CascadeArtifact,
    Mix,
    draw,
    fill,
    hull_entries,
)
from router_proxy.training import commands
from router_proxy.training.cascade_eval import cascade_curve
from router_proxy.training.cascade_sim import AnswerTable, replay, table_agreement
from router_proxy.training.cascade_train import CODE_GRID, parse_options, train_cascade
from router_proxy.training.data import TrainingData
from router_proxy.training.dataset import RoutingRow, read_rows
from router_proxy.training.evaluate import HeldOut, evaluate

MODELS = ["E", "c1", "c2", "c3"]
COST = {"E": 0.01, "c1": 0.0001, "c2": 0.0001, "c3": 0.0002}  # US$ per call
HARD = 0.3  # share of arithmetic prompts the cheap pair splits on
ARITHMETIC = [
    "What is {a} plus {b}?",
    "Compute {a} times {b}.",
    "Calculate {a} minus {b} and show the arithmetic.",
    "If you add {a} and {b}, what number do you get?",
]
LAW = [
    "Is a verbal {x} enforceable in court?",
    "Can a tenant sue the landlord for breach of the {x}?",
    "Which court has jurisdiction over a dispute about a {x}?",
]
CONTRACTS = ["lease", "employment agreement", "sales contract", "loan agreement"]
OPTIONS = "\nA) yes, always\nB) no, never\nC) only in writing\nD) only with a witness\n"


def _row(kind: str, number: int, rng: random.Random) -> dict[str, Any]:
    if kind == "math":
        a, b = rng.randint(10, 999), rng.randint(10, 99)
        prompt = rng.choice(ARITHMETIC).format(a=a, b=b)
        right, wrong = str(a + b), str(a + b + rng.choice((1, -1, 10)))
        hard = rng.random() < HARD
        first_right = rng.random() < 0.5
        good = {"E": True, "c1": not hard or first_right, "c2": not hard or not first_right}
        good["c3"] = rng.random() < 0.3
        said = {m: f"The answer is {right if good[m] else wrong}." for m in MODELS}
    else:
        prompt = rng.choice(LAW).format(x=rng.choice(CONTRACTS)) + OPTIONS
        right = rng.choice("ABCD")
        good = {"E": True, "c3": True, "c1": rng.random() < 0.4, "c2": rng.random() < 0.4}
        said = {
            m: right if good[m] else rng.choice([c for c in "ABCD" if c != right]) for m in MODELS
        }
    return {
        "id": f"{kind}.{number}",
        "task": kind,
        "prompt": prompt,
        "scores": {m: float(g) for m, g in good.items()},
        "costs": dict(COST),
        "responses": said,
    }


def write_rows(path: Path, per_kind: int, seed: int, task: bool = True) -> Path:
    rng = random.Random(seed)
    rows = [_row(kind, i, rng) for i in range(per_kind) for kind in ("math", "law")]
    if not task:
        for r in rows:
            del r["task"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@cache
def encoder() -> StaticEncoder:
    return StaticEncoder.load(EmbeddingsConfig())


@pytest.fixture(autouse=True)
def private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROUTER_PROXY_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    data = TrainingData.load([write_rows(tmp_path / "train.jsonl", 120, 1)], encoder())
    return train_cascade(data, {}).save(tmp_path / "cascade")


def _vector(prompt: str) -> np.ndarray:
    return np.asarray(encoder().encode([prompt])[0], dtype=np.float32)


HIGH = 100.0  # US$ per 1k: every plan fits


def test_learns_the_cascade_per_kind(artifact_dir: Path) -> None:
    artifact = CascadeArtifact.load(artifact_dir)
    fresh = read_rows(write_rows(artifact_dir.parent / "fresh.jsonl", 10, 7))
    for row in fresh:
        stages = artifact.stages(_vector(row.prompt), HIGH)
        if row.task == "math":
            assert [set(stage) for stage in stages] == [{"c1", "c2"}, {"E"}]
        else:
            assert stages == (("c3",),)
    # The cheapest entry calls one cheap model for arithmetic, never E.
    cheap = artifact.stages(_vector(fresh[0].prompt), 0.0)
    assert len(cheap) == 1
    assert cheap[0] in {("c1",), ("c2",), ("c3",)}
    # The frontier's knob is monotone: more budget, no lower training quality.
    assert np.all(np.diff(artifact.frontier_quality) > 0)


def _expected_cost(rows: list[RoutingRow]) -> float:
    """Per 1k: the cheap pair on every arithmetic prompt, E as well where they split,
    c3 on law prompts."""
    total = 0.0
    for row in rows:
        if row.task == "math":
            split = row.responses["c1"] != row.responses["c2"]
            total += COST["c1"] + COST["c2"] + (COST["E"] if split else 0.0)
        else:
            total += COST["c3"]
    return total / len(rows) * 1000.0


def test_eval_counts_every_call(artifact_dir: Path, tmp_path: Path) -> None:
    test = write_rows(tmp_path / "test.jsonl", 40, 5)
    result = evaluate([artifact_dir], test, progress=False)
    (router,) = result.routers
    assert router.knob == "budget_per_1k"
    assert router.calls is not None
    top = router.points[-1]
    rows = read_rows(test)
    assert top.quality == pytest.approx(1.0)
    # Discarded answers count: a split costs c1 + c2 + E, not E alone.
    assert top.cost_per_1k == pytest.approx(_expected_cost(rows), rel=1e-5)
    split = sum(r.task == "math" and r.responses["c1"] != r.responses["c2"] for r in rows)
    math = sum(r.task == "math" for r in rows)
    assert router.calls[-1] == pytest.approx((2 * math + split + (len(rows) - math)) / len(rows))
    # Cheaper than E alone at E's quality.
    assert top.cost_per_1k < result.baselines.single["E"][0] / 2


def test_stages_route_held_out_rows_as_the_search_predicted(
    artifact_dir: Path, tmp_path: Path
) -> None:
    artifact = CascadeArtifact.load(artifact_dir)
    test = HeldOut.read(write_rows(tmp_path / "test.jsonl", 40, 9))
    vectors = encoder().encode([r.prompt for r in test.rows])
    curve = cascade_curve(artifact_dir, vectors, test)
    table = AnswerTable(test.rows)
    column = {m: test.models.index(m) for m in artifact.models}
    kinds = {name: k for k, name in enumerate(artifact.kind_names)}
    for point in curve.points:
        budget = point.cost_weight
        quality = cost = 0.0
        for r, (row, vector) in enumerate(zip(test.rows, vectors, strict=True)):
            # The kind the prompt alone gives is the kind the search learned from labels;
            # its share of a filled budget is fixed by its embedding.
            plan = artifact.plan_of(kinds[row.task], budget, draw(vector))
            assert artifact.stages(vector, budget) == plan
            out = replay(plan, table_agreement(table), [r], test.scores, test.costs, column)
            quality, cost = quality + out.quality[0], cost + out.cost[0]
        assert point.quality == pytest.approx(quality / len(test.rows))
        assert point.cost_per_1k == pytest.approx(cost * 1000.0 / len(test.rows))
    # On held-out rows of the same skills the top entry does what training said it would.
    assert curve.points[-1].quality == pytest.approx(artifact.frontier_quality[-1], abs=0.02)


class TaskForbidden(RoutingRow):
    """A row whose ``task`` cannot be read: any access fails the test."""

    def __getattribute__(self, name: str) -> Any:
        if name == "task":
            raise AssertionError("eval read `task`")
        return super().__getattribute__(name)


def test_eval_never_reads_task(artifact_dir: Path, tmp_path: Path) -> None:
    labelled = write_rows(tmp_path / "with.jsonl", 30, 11)
    bare = write_rows(tmp_path / "without.jsonl", 30, 11, task=False)
    with_task = evaluate([artifact_dir], labelled, progress=False).to_json()
    without = evaluate([artifact_dir], bare, progress=False).to_json()
    assert with_task == without
    test = HeldOut.read(labelled)
    guarded = [TaskForbidden(r.id, r.prompt, "", r.scores, r.costs, r.responses) for r in test.rows]
    vectors = encoder().encode([r.prompt for r in test.rows])
    fenced = cascade_curve(
        artifact_dir, vectors, HeldOut(guarded, test.models, test.scores, test.costs)
    )
    expected = [
        v for p in with_task["routers"]["cascade"] for v in (p["cost_per_1k"], p["quality"])
    ]
    assert [v for p in fenced.points for v in p.point] == pytest.approx(expected, abs=1e-5)


def test_artifact_refuses_wrong_encoder_format_and_models(artifact_dir: Path) -> None:
    with pytest.raises(ArtifactError, match="encoder"):
        CascadeArtifact.load(artifact_dir, encoder="static:other")
    with pytest.raises(ArtifactError, match="candidates"):
        CascadeArtifact.load(artifact_dir, candidates=["c1", "c3"])
    CascadeArtifact.load(artifact_dir, encoder=encoder().name, candidates=MODELS)
    meta_path = artifact_dir / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "algorithm": "knn"}))
    with pytest.raises(ArtifactError, match="not 'cascade'"):
        CascadeArtifact.load(artifact_dir)
    meta_path.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ArtifactError, match="format version"):
        CascadeArtifact.load(artifact_dir)
    meta_path.write_text(json.dumps({**meta, "models": ["E"]}))
    with pytest.raises(ArtifactError, match="policies"):
        CascadeArtifact.load(artifact_dir)
    meta_path.write_text(json.dumps(meta))
    artifact = CascadeArtifact.load(artifact_dir)
    with pytest.raises(ValueError, match="dimensions"):
        artifact.stages(np.ones(3, dtype=np.float32), 1.0)


def test_bad_options_are_refused() -> None:
    for bad in (
        {"families": "pair"},
        {"families": "single,nope"},
        {"kinds": "cluster"},
        {"neighbours": 0},
        {"stage_cost_share": 2},
        {"code_cascades": "yes"},
        {"fill": "yes"},
        {"budget_margin": 1},
        {"budget_margin": -0.1},
        {"code_similarity": 0},
        {"code_similarity": 1.5},
        {"progress": "no"},
        {"code_similarity": "tight"},
        {"colour": 1},
    ):
        with pytest.raises(ValueError, match="cascade"):
            parse_options(bad)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_cli_trains_and_evaluates_beside_knn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = str(write_rows(tmp_path / "train.jsonl", 60, 1))
    test = str(write_rows(tmp_path / "test.jsonl", 20, 2))
    for algorithm, options in (("cascade", ["--option", "families=single,pair"]), ("knn", [])):
        argv = ["train", "--algorithm", algorithm, "--data", train, "--quiet"]
        assert _cli([*argv, "--out", str(tmp_path / algorithm), *options]) == 0
    capsys.readouterr()
    routers = ["--router", str(tmp_path / "knn"), "--router", str(tmp_path / "cascade")]
    assert _cli(["eval", *routers, "--data", test, "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["aiq"]) == {"knn", "cascade"}
    assert {"budget_per_1k", "calls_per_request"} <= set(result["routers"]["cascade"][0])
    assert "cost_weight" in result["routers"]["knn"][0]
    # The cascade beats the single-call router here: arithmetic needs E only on splits.
    assert result["aiq"]["cascade"] > result["aiq"]["knn"]
    assert _cli(["eval", *routers, "--data", test, "--quiet"]) == 0
    assert "calls/request" in capsys.readouterr().out


def _code_row(number: int, rng: random.Random) -> dict[str, Any]:
    a = rng.randint(2, 99)
    good = {"E": True, "c1": rng.random() < 0.5, "c2": rng.random() < 0.5, "c3": False}
    body = {True: f"return x + {a}", False: f"return x - {a}"}
    said = {m: f"```python\ndef add_{a}(x):\n    {body[g]}\n```" for m, g in good.items()}
    return {
        "id": f"code.{number}",
        "task": "code",
        "prompt": f"Write a python function that adds {a} to its argument.",
        "scores": {m: float(g) for m, g in good.items()},
        "costs": dict(COST),
        "responses": said,
    }


def _code_data(tmp_path: Path) -> TrainingData:
    rng = random.Random(3)
    path = write_rows(tmp_path / "train.jsonl", 60, 4)
    rows = path.read_text() + "".join(json.dumps(_code_row(i, rng)) + "\n" for i in range(60))
    path.write_text(rows)
    return TrainingData.load([path], encoder())


def test_code_kinds_get_single_models_when_told(tmp_path: Path) -> None:
    data = _code_data(tmp_path)
    options = {"families": "single,pair", "code_cascades": False}
    artifact = CascadeArtifact.from_artifact(train_cascade(data, options))
    code = _vector("Write a python function that adds 7 to its argument.")
    assert artifact.kind_names[artifact.kind(code)] == "code"
    assert len(artifact.stages(code, HIGH)) == 1  # one stage of one model: no code agreement
    saved = train_cascade(data, options)
    assert saved.extra["code_kinds"] == ["code"]
    assert saved.extra["code_cascades"] is False
    allowed = train_cascade(data, {"families": "single,pair", "code_cascades": True})
    assert allowed.extra["code_kinds"] == ["code"]
    assert allowed.params["code_cascades"] is True


def test_cv_chooses_code_cascades_and_the_similarity_they_agree_at(tmp_path: Path) -> None:
    data = _code_data(tmp_path)
    auto = train_cascade(data, {"families": "single,pair"})
    tried = [(t["code_cascades"], t["code_similarity"]) for t in auto.extra["code_tuning"]]
    assert tried == [(False, CODE_SIMILARITY)] + [(True, t) for t in CODE_GRID]
    chosen = (auto.extra["code_cascades"], auto.extra["code_similarity"])
    assert chosen in tried
    best = max(auto.extra["code_tuning"], key=lambda t: round(t["cv_aiq"], 4))
    assert chosen == (best["code_cascades"], best["code_similarity"])
    assert CascadeArtifact.from_artifact(auto).code_similarity == chosen[1]
    fixed = train_cascade(data, {"families": "single,pair", "code_similarity": 0.9})
    assert fixed.params["code_similarity"] == 0.9
    assert CascadeArtifact.from_artifact(fixed).code_similarity == 0.9


def test_code_agreement_follows_the_similarity(tmp_path: Path) -> None:
    # c1 right, c2 wrong: "return x + 5" against "return x - 5", nearly the same tokens.
    row = _code_row(0, random.Random(0))
    row["responses"]["c2"] = row["responses"]["c1"].replace(" + ", " - ").replace(" - ", " + ")
    rows = read_rows(_write(tmp_path / "one.jsonl", [row]))
    table = AnswerTable(rows)
    assert table.is_code(0, ("c1", "c2"))
    assert table.agrees(0, ("c1", "c2"), 0.05)
    assert not table.agrees(0, ("c1", "c2"), 0.99)
    assert table.agrees(0, ("c1", "c2")) == table.agrees(0, ("c1", "c2"), CODE_SIMILARITY)


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_hull_and_fill_mix_the_entries_around_the_budget() -> None:
    cost = np.array([1.0, 2.0, 3.0, 4.0])
    quality = np.array([0.5, 0.6, 0.8, 0.85])  # (2, 0.6) lies under the hull 1 -> 3
    hull = hull_entries(cost, quality)
    assert hull == [0, 2, 3]
    assert fill(cost, hull, 0.5) == Mix(0, 0, 0.0)  # below the cheapest: the cheapest
    assert fill(cost, hull, 9.0) == Mix(3, 3, 0.0)  # above the dearest: the dearest
    mix = fill(cost, hull, 2.5)
    assert (mix.low, mix.high) == (0, 2)
    assert mix.share == pytest.approx(0.75)  # 0.25 * 1.0 + 0.75 * 3.0 = 2.5
    # The mix beats the Pareto entry it replaces at the same cost: 0.7 at 2.0 vs 0.6.
    half = fill(cost, hull, 2.0)
    assert (1 - half.share) * quality[0] + half.share * quality[2] == pytest.approx(0.65)


def _filled_artifact(tmp_path: Path, options: dict[str, Any]) -> tuple[CascadeArtifact, Any]:
    data = TrainingData.load([write_rows(tmp_path / "train.jsonl", 120, 1)], encoder())
    return CascadeArtifact.from_artifact(train_cascade(data, options)), data


def test_a_filled_budget_spends_what_it_is_given(tmp_path: Path) -> None:
    artifact, data = _filled_artifact(tmp_path, {"budget_margin": 0.1})
    assert artifact.hull is not None
    assert artifact.budget_margin == 0.1
    hull = list(artifact.hull)
    low, high = hull[-2], hull[-1]
    lo_cost, hi_cost = artifact.frontier_cost[low], artifact.frontier_cost[high]
    target = (lo_cost + hi_cost) / 2
    knob = target / (1 - artifact.budget_margin)  # the margin is kept back
    mix = artifact.mix(knob)
    assert (mix.low, mix.high) == (low, high)
    assert mix.share == pytest.approx(0.5)
    # Prompts split by their embeddings' draw, about half each; the same prompt always
    # gets the same plan.
    vectors = data.embeddings / np.linalg.norm(data.embeddings, axis=1, keepdims=True)
    plans = [artifact.stages(v.astype(np.float32), knob) for v in vectors]
    assert plans == [artifact.stages(v.astype(np.float32), knob) for v in vectors]
    dearer = [artifact.plan_of(artifact.kind(v), knob, 0.0) for v in vectors]
    cheaper = [artifact.plan_of(artifact.kind(v), knob, 1.0) for v in vectors]
    differ = [d != c for d, c in zip(dearer, cheaper, strict=True)]
    took = [p == d for p, d, x in zip(plans, dearer, differ, strict=True) if x]
    assert took
    assert 0.35 < sum(took) / len(took) < 0.65
    # At a vertex's knob the artifact buys the vertex outright.
    vertex = artifact.mix(artifact.knob_for(high))
    assert vertex.high == high
    assert vertex.share == 0 or vertex.low == high


def test_without_fill_the_knob_picks_one_entry(tmp_path: Path) -> None:
    artifact, _ = _filled_artifact(tmp_path, {"fill": False})
    assert artifact.hull is None
    assert artifact.budget_margin == 0.0
    between = (artifact.frontier_cost[-2] + artifact.frontier_cost[-1]) / 2
    assert artifact.mix(between) == Mix(
        len(artifact.frontier_cost) - 2, len(artifact.frontier_cost) - 2, 0.0
    )
    assert artifact.entry(between) == len(artifact.frontier_cost) - 2


def test_draw_is_a_fixed_number_of_the_embedding() -> None:
    vector = _vector("What is 12 plus 30?")
    assert 0.0 <= draw(vector) < 1.0
    assert draw(vector) == draw(vector.copy()) == draw(vector.astype(np.float64))
    assert draw(vector) != draw(_vector("Is a verbal lease enforceable in court?"))


def test_artifacts_without_fill_keys_load_as_one_entry_knobs(artifact_dir: Path) -> None:
    meta_path = artifact_dir / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["extra"]["fill"] is True
    old = {k: v for k, v in meta["extra"].items() if k not in ("fill", "budget_margin")}
    meta_path.write_text(json.dumps({**meta, "extra": old}))
    artifact = CascadeArtifact.load(artifact_dir)
    assert artifact.hull is None
    assert artifact.budget_margin == 0.0
    meta_path.write_text(json.dumps({**meta, "extra": {**meta["extra"], "budget_margin": 1.5}}))
    with pytest.raises(ArtifactError, match="budget_margin"):
        CascadeArtifact.load(artifact_dir)
