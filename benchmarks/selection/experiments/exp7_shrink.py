"""kNN shrink (session 3): neighbours' scores pulled toward their task's mean.

1. RouterBench, train 5-fold task-stratified CV (fold seeds 0 and 1): the trainer's
   default (`shrink` tuned by leave-one-out inside each fold) vs `shrink: 0`.
2. open7, five task-stratified 20% hold-outs: the same two, the task-label router
   (reference: it is handed each row's task), k-means niches and ridge regression on the
   embeddings (cluster count / alpha chosen by 5-fold CV on the 80%), and a per-task
   breakdown of where plain kNN loses to the task's best model.
3. RouterBench within-task difficulty: ridge regression of the mean score over the 11
   models on the question's MiniLM embedding or TF-IDF (5-fold, per task); Spearman with
   the true difficulty and the AUC of the prediction for each model's correctness. Needs
   exp2's cached MiniLM question embeddings (skipped when absent).

    nice -n 10 .venv/bin/python -m benchmarks.selection.experiments.exp7_shrink

About two minutes on the 2-core machine (3 needs exp2 to have cached its embeddings).
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold

from router_proxy.embeddings.base import normalise
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder
from router_proxy.selection.knn import KnnIndex
from router_proxy.training.aiq import (
    aiq,
    baselines,
    best_under,
    choices_at,
    cost_weight_grid,
    fill_costs,
    hull_at,
    shared_axis,
    sweep,
)
from router_proxy.training.data import TrainingData, stratified_holdout
from router_proxy.training.knn_train import score_matrix, train_knn

DATA = Path("/work/shared/data")
SETUPS = (("knn (shrink auto)", {}), ("knn shrink=0", {"shrink": 0}))


def routerbench_cv(encoder) -> None:
    data = TrainingData.load([DATA / "routerbench/train.jsonl"], encoder, progress=False)
    tasks = np.array([r.task for r in data.rows])
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name, _ in SETUPS}
    for fold_seed in (0, 1):
        folds = StratifiedKFold(5, shuffle=True, random_state=fold_seed).split(tasks, tasks)
        for fit_index, held_index in folds:
            fit, held = data.subset(fit_index), data.subset(held_index)
            scores, costs = score_matrix(held), fill_costs(held.cost_matrix())
            per_1k = fit.cost_per_1k()
            low, high = shared_axis([list(baselines(held.models, scores, costs).single.values())])
            for name, options in SETUPS:
                artifact = train_knn(fit, options)
                predicted = KnnIndex.from_artifact(artifact).predict_batch(held.embeddings)
                grid = cost_weight_grid(predicted, per_1k, points=48)
                sweep_at = partial(choices_at, predicted, per_1k)
                curve = [p.point for p in sweep(sweep_at, scores, costs, grid)]
                results[name].append(
                    (
                        aiq(curve, low, high),
                        best_under(curve, 0.5),
                        hull_at(curve, 0.5),
                        best_under(curve, 2.5),
                        hull_at(curve, 2.5),
                        float(artifact.extra["shrink"]),
                    )
                )
    print("RouterBench train, 2 x 5-fold CV")
    for name, rows in results.items():
        m = np.array(rows).mean(axis=0)
        print(
            f"  {name:<18} AIQ {m[0]:.4f}  q<=$0.50 {m[1]:.4f} (hull {m[2]:.4f})  "
            f"q<=$2.50 {m[3]:.4f} (hull {m[4]:.4f})  mean shrink {m[5]:.2f}"
        )
    gain = np.array(results[SETUPS[0][0]])[:, 0] - np.array(results[SETUPS[1][0]])[:, 0]
    print(f"  AIQ gain per fold: {np.round(gain, 4).tolist()} ({(gain > 0).sum()}/10 > 0)")


def quality(predicted: np.ndarray, scores: np.ndarray) -> float:
    return float(scores[np.arange(len(scores)), predicted.argmax(axis=1)].mean())


def clusters(x: np.ndarray, s: np.ndarray, n: int):
    km = KMeans(n, n_init=3, random_state=0).fit(x)
    means = np.stack([s[km.labels_ == c].mean(axis=0) for c in range(n)])
    return lambda q: means[km.predict(q)]


def ridge(x: np.ndarray, s: np.ndarray, alpha: float):
    return Ridge(alpha=alpha).fit(x, s).predict


def cv_choice(x: np.ndarray, s: np.ndarray, makers: dict) -> str:
    got = {name: [] for name in makers}
    for a, b in KFold(5, shuffle=True, random_state=0).split(x):
        for name, make in makers.items():
            got[name].append(quality(make(x[a], s[a])(x[b]), s[b]))
    return max(got, key=lambda name: np.mean(got[name]))


def open7(encoder) -> None:
    data = TrainingData.load([DATA / "open7/train.jsonl"], encoder, progress=False)
    tasks = np.array([r.task for r in data.rows])
    vectors, scores = normalise(data.embeddings.astype(np.float32)), score_matrix(data)
    niches = {f"k-means {n}": partial(clusters, n=n) for n in (6, 12, 24, 48, 96)}
    ridges = {f"ridge alpha={a}": partial(ridge, alpha=a) for a in (0.1, 1, 10, 100)}
    columns = [name for name, _ in SETUPS] + ["task-label", "k-means (CV)", "ridge (CV)"]
    margins: dict[str, list[float]] = {name: [] for name in columns}
    fixed: dict[str, list[float]] = {name: [] for name in {**niches, **ridges}}
    breakdown: dict[str, list[tuple[float, float]]] = {}
    print("\nopen7, five 20% hold-outs: points above the best single model")
    for seed in range(5):
        held = stratified_holdout(list(tasks), 0.2, seed=seed)
        fit_x, test_x, fit_s, test_s = vectors[~held], vectors[held], scores[~held], scores[held]
        fit_t, test_t = tasks[~held], tasks[held]
        top = test_s.mean(axis=0).max()
        predictions = {}
        for name, options in SETUPS:
            index = KnnIndex.from_artifact(train_knn(data.subset(~held), options))
            predictions[name] = index.predict_batch(test_x)
        means = {t: fit_s[fit_t == t].mean(axis=0) for t in set(fit_t)}
        predictions["task-label"] = np.stack([means[t] for t in test_t])
        for family, makers in (("k-means (CV)", niches), ("ridge (CV)", ridges)):
            chosen = cv_choice(fit_x, fit_s, makers)
            predictions[family] = makers[chosen](fit_x, fit_s)(test_x)
        for name, make in {**niches, **ridges}.items():
            fixed[name].append((quality(make(fit_x, fit_s)(test_x), test_s) - top) * 100)
        for name in columns:
            margins[name].append((quality(predictions[name], test_s) - top) * 100)
        for t in sorted(set(test_t)):
            rows = test_t == t
            plain = quality(predictions[SETUPS[1][0]][rows], test_s[rows])
            task_best = float(test_s[rows][:, means[t].argmax()].mean())
            breakdown.setdefault(t, []).append((plain, task_best))
        print(f"  seed {seed}: " + "  ".join(f"{n} {margins[n][-1]:+.2f}" for n in columns))
    print("  mean:   " + "  ".join(f"{n} {np.mean(margins[n]):+.2f}" for n in columns))
    print("  fixed settings, mean over seeds:")
    for name, values in fixed.items():
        print(f"    {name:<16} {np.mean(values):+.2f}")
    print("  per task, mean over seeds: kNN shrink=0 vs the task's best model (on train)")
    for t, pairs in breakdown.items():
        plain, task_best = np.mean(pairs, axis=0)
        print(f"    {t:<14} {plain:.4f} vs {task_best:.4f}")


def difficulty() -> None:
    cache = Path("/tmp/select-cache/train-st_question.npy")
    if not cache.exists():
        print("\n(difficulty probe skipped: run exp2_question.py once to cache embeddings)")
        return
    from common import load

    split = load("train")
    embedded, questions = np.load(cache), split.questions
    print("\nRouterBench within-task difficulty (mean score over 11 models), 5-fold ridge")
    for task in sorted(set(split.tasks)):
        index = np.where(split.tasks == task)[0]
        s = split.scores[index]
        target = s.mean(axis=1)
        for name in ("minilm", "tfidf"):
            out = np.zeros(len(index))
            for a, b in KFold(5, shuffle=True, random_state=0).split(index):
                if name == "minilm":
                    xa, xb = embedded[index[a]], embedded[index[b]]
                else:
                    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
                    xa = tfidf.fit_transform([questions[i] for i in index[a]])
                    xb = tfidf.transform([questions[i] for i in index[b]])
                out[b] = RidgeCV(alphas=np.logspace(-2, 3, 12)).fit(xa, target[a]).predict(xb)
            rho = float(
                np.corrcoef(np.argsort(np.argsort(out)), np.argsort(np.argsort(target)))[0, 1]
            )
            aucs = [
                roc_auc_score(s[:, j], out) for j in range(s.shape[1]) if 0 < s[:, j].mean() < 1
            ]
            print(
                f"  {task:<14} {name:<7} spearman {rho:+.3f}  per-model AUC mean "
                f"{np.mean(aucs):.3f} ({min(aucs):.3f}-{max(aucs):.3f})"
            )


def main() -> None:
    warnings.simplefilter("ignore")
    encoder = build_encoder(EmbeddingsConfig())
    routerbench_cv(encoder)
    open7(encoder)
    difficulty()


if __name__ == "__main__":
    main()
