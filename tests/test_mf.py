"""Matrix-factorization selector: training recovers known structure, quality scale, cost
trade-off, artifact round trip, and a numpy-only serving path."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from router_proxy.context import RequestContext
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.resources import BuildContext, Resources
from router_proxy.selection.artifact import Artifact, load_artifact
from router_proxy.selection.learned import LearnedParams
from router_proxy.selection.mf import MfSelector, quality_head
from router_proxy.training.data import TrainingData
from router_proxy.training.dataset import RoutingRow
from router_proxy.training.mf_train import (
    BradleyTerryMf,
    MfOptions,
    fold_ids,
    preference_mask,
    train_mf,
)

MODELS = ("coder", "linguist", "generalist")
COST = {"coder": 0.005, "linguist": 0.001, "generalist": 0.0002}  # $5, $1, $0.2 per 1k
QUICK = {"folds": 2, "epochs": 40, "progress": False}

TRAIN_WORDS = (["sorts", "reverses", "filters", "merges"], ["numbers", "strings", "records"])
FRESH_WORDS = (["deduplicates", "groups", "counts"], ["timestamps", "invoices", "tokens"])


def prompts(kind: str, words: tuple[list[str], list[str]]) -> list[str]:
    verbs, nouns = words
    if kind == "code":
        return [
            f"Write a Python function that {v} a list of {n} and add unit tests with pytest."
            for v in verbs
            for n in nouns
        ]
    return [
        f"Translate into French and German: the old librarian {v} the {n} every morning."
        for v in verbs
        for n in nouns
    ]


def synthetic_rows(
    words: tuple[list[str], list[str]], repeat: int, seed: int = 0
) -> list[RoutingRow]:
    """coder is right on code prompts only, linguist on translation only, generalist (the
    cheapest) on a random half of both."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind in ("code", "translate"):
        for i, prompt in enumerate(prompts(kind, words) * repeat):
            lucky = float(rng.random() < 0.5)
            scores = {
                "coder": float(kind == "code"),
                "linguist": float(kind == "translate"),
                "generalist": lucky,
            }
            rows.append(RoutingRow(f"{kind}-{i}", prompt, kind, scores, dict(COST)))
    return rows


def write_jsonl(path: Path, rows: list[RoutingRow]) -> Path:
    with path.open("w") as fh:
        for r in rows:
            fh.write(
                json.dumps(
                    {
                        "id": r.id,
                        "task": r.task,
                        "prompt": r.prompt,
                        "scores": r.scores,
                        "costs": r.costs,
                    }
                )
                + "\n"
            )
    return path


@pytest.fixture(scope="module")
def shared() -> SharedEncoder:
    return SharedEncoder(EmbeddingsConfig())


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, shared: SharedEncoder
) -> Iterator[tuple[Artifact, Path]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROUTER_PROXY_CACHE", str(tmp_path_factory.mktemp("cache")))
        path = write_jsonl(
            tmp_path_factory.mktemp("data") / "train.jsonl", synthetic_rows(TRAIN_WORDS, 3)
        )
        data = TrainingData.load([path], shared.get(), progress=False)
        artifact = train_mf(data, QUICK)
        out = tmp_path_factory.mktemp("artifact") / "mf"
        artifact.save(out)
        yield artifact, out


def selector(artifact: Artifact, shared: SharedEncoder, cost_weight: float = 0.0) -> MfSelector:
    params = LearnedParams(artifact=Path("unused"), cost_weight=cost_weight)
    return MfSelector(MODELS, {}, params, artifact, shared)


def test_recovers_structure_on_fresh_prompts(
    trained: tuple[Artifact, Path], shared: SharedEncoder
) -> None:
    artifact, _ = trained
    mf = selector(artifact, shared)
    enc = shared.get()
    for kind, best in (("code", "coder"), ("translate", "linguist")):
        for vector in enc.encode(prompts(kind, FRESH_WORDS)):
            assert mf.rank(vector)[0] == best
    # The quality scale: the right specialist near 1, the wrong one near 0, generalist ~0.5.
    quality = mf.predict_batch(enc.encode(prompts("code", FRESH_WORDS)))
    coder, linguist, generalist = (quality[:, artifact.models.index(m)].mean() for m in MODELS)
    assert coder > 0.8 > 0.2 > linguist
    assert 0.25 < generalist < 0.75


def test_bradley_terry_loss_decreases(trained: tuple[Artifact, Path]) -> None:
    artifact, _ = trained
    for history in artifact.extra["loss"]:
        first, last = history[0][0], min(t for t, _ in history)
        assert last < first < np.log(2) + 0.05
    assert artifact.arrays["v"].shape == (2, len(MODELS), 128)  # two cross-fitted members


def test_cost_weight_moves_choices_to_the_cheaper_model(
    trained: tuple[Artifact, Path], shared: SharedEncoder
) -> None:
    artifact, _ = trained
    np.testing.assert_allclose(artifact.arrays["cost_per_1k"], [5.0, 1.0, 0.2], rtol=1e-5)
    vectors = shared.get().encode(prompts("code", FRESH_WORDS))
    free, frugal = selector(artifact, shared, 0.0), selector(artifact, shared, 1.0)
    assert all(free.rank(v)[0] == "coder" for v in vectors)
    assert all(frugal.rank(v)[0] == "generalist" for v in vectors)  # 0.5 - 0.2 beats 1 - 5


def test_artifact_round_trip_and_build(
    trained: tuple[Artifact, Path], shared: SharedEncoder
) -> None:
    artifact, path = trained
    loaded = load_artifact(path, "mf")
    assert loaded.models == artifact.models
    assert loaded.encoder == "static:minilm-l6-v2-m2v-256"
    for key, value in artifact.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], value)
    params = LearnedParams(artifact=path, cost_weight=0.0)
    built = MfSelector.build(("linguist", "coder"), params, BuildContext(Resources(encoder=shared)))
    ctx = RequestContext.from_prompt("Translate into French: the cat sleeps on the warm mat.")
    assert asyncio.run(built.order(ctx)) == ("linguist", "coder")
    vectors = shared.get().encode(prompts("code", FRESH_WORDS))
    np.testing.assert_allclose(
        built.predict_batch(vectors), selector(artifact, shared).predict_batch(vectors), atol=1e-6
    )
    np.testing.assert_allclose(
        built.predict(vectors[0]), built.predict_batch(vectors)[0], atol=1e-6
    )


def test_quality_head_folds_the_whole_model() -> None:
    """The folded (K, c) equals the model written out step by step."""
    rng = np.random.default_rng(3)
    m, d, k = 4, 6, 5
    arrays = {
        "v": rng.standard_normal((m, k)),
        "W": rng.standard_normal((k, d)),
        "w": rng.standard_normal(k),
        "mean": rng.standard_normal(d),
        "scale": rng.uniform(0.5, 2, d),
        "calib_a": np.array([0.7]),
        "calib_b": rng.standard_normal(m),
        "calib_u": rng.standard_normal(d),
    }
    e = rng.standard_normal(d)
    x = (e - arrays["mean"]) / arrays["scale"]
    vn = arrays["v"] / np.linalg.norm(arrays["v"], axis=1, keepdims=True)
    s = np.array([arrays["w"] @ (vn[i] * (arrays["W"] @ x)) for i in range(m)])
    logit = 0.7 * (s - s.mean()) + arrays["calib_b"] + arrays["calib_u"] @ x
    kernel, bias = quality_head({k2: v.astype(np.float32) for k2, v in arrays.items()})
    np.testing.assert_allclose(kernel @ e + bias, logit, rtol=1e-4, atol=1e-4)


def test_pairs_drop_ties_and_missing_scores() -> None:
    mask = preference_mask(np.array([[1.0, 0.0, 1.0, np.nan], [0.5, 0.5, 0.5, 0.5]]))
    assert {tuple(p) for p in np.argwhere(mask[0])} == {(0, 1), (2, 1)}
    assert not mask[1].any()


def test_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    model = BradleyTerryMf(4, 5, 3, rng)
    x = rng.standard_normal((6, 5))
    pairs = preference_mask(rng.integers(0, 2, (6, 4)).astype(float))
    _, grads = model.loss_grad(x, pairs)
    for name, param in model.p.items():
        numeric = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            old = param[idx]
            param[idx] = old + 1e-6
            up = model.loss_grad(x, pairs)[0]
            param[idx] = old - 1e-6
            down = model.loss_grad(x, pairs)[0]
            param[idx] = old
            numeric[idx] = (up - down) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, atol=1e-7)


def test_options_and_folds() -> None:
    assert MfOptions.parse({"epochs": "3", "standardize": "false"}) == MfOptions(
        epochs=3, standardize=False
    )
    with pytest.raises(ValueError, match="unknown mf option"):
        MfOptions.parse({"epoch": 3})
    folds = fold_ids(["a"] * 10 + ["b"] * 5, 5, seed=1)
    assert sorted(np.bincount(folds[:10])) == [2] * 5
    assert sorted(np.bincount(folds[10:])) == [1] * 5


def test_serving_path_imports_no_torch(trained: tuple[Artifact, Path]) -> None:
    _, path = trained
    code = (
        "import asyncio, sys\n"
        "from router_proxy.embeddings.config import EmbeddingsConfig\n"
        "from router_proxy.embeddings.shared import SharedEncoder\n"
        "from router_proxy.resources import BuildContext, Resources\n"
        "from router_proxy.context import RequestContext\n"
        "from router_proxy.selection.learned import LearnedParams\n"
        "from router_proxy.selection.mf import MfSelector\n"
        "import router_proxy.training.mf_train, router_proxy.training.calibrate\n"
        f"params = LearnedParams(artifact={str(path)!r}, cost_weight=0.1)\n"
        "res = Resources(encoder=SharedEncoder(EmbeddingsConfig()))\n"
        "sel = MfSelector.build(('coder', 'linguist'), params, BuildContext(res))\n"
        "print(asyncio.run(sel.order(RequestContext.from_prompt('Write a Python function'))))\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "coder" in done.stdout


def test_real_encoder_is_fast_enough(trained: tuple[Artifact, Path]) -> None:
    """rank() after the embedding: far below a millisecond."""
    import time

    artifact, _ = trained
    mf = selector(artifact, SharedEncoder(EmbeddingsConfig()))
    vector = build_encoder(EmbeddingsConfig(cache_size=0)).encode(["Write a Python function"])[0]
    start = time.perf_counter()
    for _ in range(200):
        mf.rank(vector)
    assert (time.perf_counter() - start) / 200 < 1e-3
