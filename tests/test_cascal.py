"""CASCAL: consensus, niches, the trainer and the selector (query-only routing)."""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.embeddings.static import StaticEncoder
from router_proxy.selection.artifact import Artifact, ArtifactError, load_artifact
from router_proxy.selection.cascal import CascalSelector, NicheIndex
from router_proxy.selection.learned import LearnedParams
from router_proxy.training.cascal_train import train_cascal
from router_proxy.training.consensus import consensus
from router_proxy.training.data import TrainingData
from router_proxy.training.dataset import RoutingRow

MODELS = ["A", "B", "n1", "n2", "n3"]
LAWS = ["contract", "tort", "property", "criminal", "evidence", "trust", "copyright", "tax"]


def test_consensus_on_hand_made_votes() -> None:
    votes = [
        ["x", "x", "x", "y"],
        ["x", "x", "y", "y"],
        ["p", "p", "p", None],
        ["1", "2", "3", "4"],
    ]
    result = consensus(votes)
    # The fourth model disagrees with the majority most often and never answers row 2.
    assert result.weights[0, 3] < result.weights[0, 0]
    scores = result.scores
    assert scores[0, 0] == scores[0, 1] == scores[0, 2] > 0.5 > scores[0, 3]
    # Row 1 is a 2-2 tie in votes, broken by the models' reliability.
    assert scores[1, 0] > scores[1, 3]
    assert scores[2, 3] == 0.0  # no answer, no mass
    assert np.isclose(scores[0, 0] + scores[0, 3], 1.0)  # posterior over the answers given
    assert result.share.tolist() == [0.75, 0.5, 0.75, 0.25]
    assert result.agrees[0].tolist() == [True, True, True, False]


def test_consensus_weights_are_per_group() -> None:
    votes = [["a", "a", "b"]] * 4 + [["a", "b", "b"]] * 4
    result = consensus(votes, ["g1"] * 4 + ["g2"] * 4)
    assert result.groups == ["g1", "g2"]
    assert result.weights[0, 0] > result.weights[0, 2]
    assert result.weights[1, 2] > result.weights[1, 0]


def _arithmetic(rng: random.Random) -> tuple[str, str, list[str]]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    right = str(a + b)
    wrong = [str(a + b + d) for d in (1, -1, 10, 2, -10)]
    return f"Compute the sum: what is {a} plus {b}? Give the number.", right, wrong


def _law(rng: random.Random) -> tuple[str, str, list[str]]:
    topic, case = rng.choice(LAWS), rng.randint(1, 999)
    prompt = (
        f"In {topic} law case {case}, which legal doctrine applies to the dispute?\n"
        "A) estoppel\nB) negligence\nC) consideration\nD) adverse possession\nAnswer:"
    )
    right = rng.choice("ABCD")
    return prompt, right, [c for c in "ABCD" if c != right]


def synthetic_rows(n: int, seed: int, scores: str = "truth") -> list[RoutingRow]:
    """A answers arithmetic like the majority and law wrongly, B the reverse; three noisy
    models are right 75% of the time. ``scores``: 'truth', 'adversarial' (inverted) or
    'none'."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = "math" if i % 2 == 0 else "law"
        prompt, right, wrong = (_arithmetic if kind == "math" else _law)(rng)
        good = {"A": kind == "math", "B": kind == "law"}
        good |= {m: rng.random() < 0.75 for m in MODELS[2:]}
        answers = {m: right if good[m] else rng.choice(wrong) for m in MODELS}
        if kind == "law":
            answers = {m: f"The answer is {a}." for m, a in answers.items()}
        truth = {m: float(good[m]) for m in MODELS}
        row_scores = {
            "truth": truth,
            "adversarial": {m: 1.0 - v for m, v in truth.items()},
            "none": {},
        }[scores]
        costs = {"A": 0.001, "B": 0.001, "n1": 0.0005, "n2": 0.0005, "n3": 0.002}
        rows.append(RoutingRow(f"{kind}.{i}", prompt, "", row_scores, costs, answers))
    return rows


@cache
def encoder() -> StaticEncoder:
    return StaticEncoder.load(EmbeddingsConfig())


def training_data(rows: list[RoutingRow]) -> TrainingData:
    vectors = encoder().encode([r.prompt for r in rows])
    return TrainingData(rows, vectors, list(MODELS), encoder().name, "test")


@cache
def trained() -> Artifact:
    return train_cascal(training_data(synthetic_rows(240, seed=1)), {})


def _route(artifact: Artifact, prompts: list[str], cost_weight: float = 0.0) -> list[str]:
    selector = CascalSelector(
        tuple(MODELS),
        {},
        LearnedParams(artifact=Path("unused"), cost_weight=cost_weight),
        artifact,
        SharedEncoder(),
    )
    vectors = encoder().encode(prompts)
    return [selector.rank(v)[0] for v in vectors]


def test_routes_by_skill_niche() -> None:
    fresh = synthetic_rows(40, seed=99)
    math = [r.prompt for r in fresh if r.id.startswith("math")]
    law = [r.prompt for r in fresh if r.id.startswith("law")]
    assert _route(trained(), math) == ["A"] * len(math)
    assert _route(trained(), law) == ["B"] * len(law)


def test_cost_weight_moves_to_cheaper_models() -> None:
    prompt = synthetic_rows(2, seed=5)[0].prompt
    assert _route(trained(), [prompt]) == ["A"]
    assert _route(trained(), [prompt], cost_weight=100.0)[0] in {"n1", "n2"}


class ScoresForbidden(RoutingRow):
    """A row whose ``scores`` cannot be read: any access fails the test."""

    def __getattribute__(self, name: str) -> Any:
        if name == "scores":
            raise AssertionError("CASCAL read `scores`")
        return super().__getattribute__(name)


def _same(a: Artifact, b: Artifact) -> None:
    assert a.arrays.keys() == b.arrays.keys()
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=key)
    assert a.extra == b.extra
    assert a.params == b.params


def test_never_reads_scores() -> None:
    base = synthetic_rows(120, seed=3)
    forbidden = [ScoresForbidden(r.id, r.prompt, r.task, {}, r.costs, r.responses) for r in base]
    guarded = train_cascal(training_data(forbidden), {})  # raises on any `scores` access
    for variant in ("truth", "adversarial", "none"):
        _same(guarded, train_cascal(training_data(synthetic_rows(120, 3, variant)), {}))


def test_deterministic() -> None:
    rows = synthetic_rows(120, seed=4)
    _same(train_cascal(training_data(rows), {}), train_cascal(training_data(rows), {}))


def test_artifact_round_trip(tmp_path: Path) -> None:
    artifact = trained()
    loaded = load_artifact(artifact.save(tmp_path / "cascal"), "cascal")
    assert loaded.models == MODELS
    assert loaded.encoder == encoder().name
    _same(artifact, loaded)
    queries = encoder().encode([r.prompt for r in synthetic_rows(10, seed=7)])
    expected = NicheIndex(artifact).predict_batch(queries)
    np.testing.assert_allclose(NicheIndex(loaded).predict_batch(queries), expected)
    one = NicheIndex(loaded).predict(queries[0])
    np.testing.assert_allclose(one, expected[0], rtol=1e-6)


def test_far_and_empty_prompts_use_the_global_ranking() -> None:
    index = NicheIndex(trained())
    empty = index.predict(np.zeros(encoder().dim, dtype=np.float32))
    np.testing.assert_allclose(empty, index.global_values, rtol=1e-6)
    assert np.isclose(float(empty.sum()), 1.0, atol=1e-5)  # ranking scale: shares


def test_consensus_scale_is_an_accuracy_estimate() -> None:
    artifact = train_cascal(training_data(synthetic_rows(120, seed=1)), {"scale": "consensus"})
    values = NicheIndex(artifact).predict_batch(encoder().encode(["what is 12 plus 30?"]))[0]
    assert values.min() >= 0.0
    assert values.max() <= 1.0
    assert MODELS[int(np.argmax(values))] == "A"


def test_bad_options_and_artifacts_are_refused() -> None:
    data = training_data(synthetic_rows(20, seed=1))
    with pytest.raises(ValueError, match="unknown cascal option"):
        train_cascal(data, {"k": 3})
    with pytest.raises(ValueError, match="scale"):
        train_cascal(data, {"scale": "loud"})
    broken = Artifact("cascal", MODELS, "x", {"centroids": np.zeros((1, 4))})
    with pytest.raises(ArtifactError, match="not a usable cascal artifact"):
        NicheIndex(broken)
