"""Idea 3: per-model classifiers of P(correct), within each task.

For each task (at serving: the nearest training prompt's task, exact under CV here) and
each model, a logistic regression (L2, C from a small grid) or gradient boosting on
question features predicts P(model answers correctly). Its within-task AUC (out of fold)
says whether the features carry any difficulty signal at all; the predicted
probabilities route as kNN's do (``quality - w * cost``).

Feature sets: MiniLM question embedding, TF-IDF word 1-2-grams, length features, the
static whole-prompt embedding, and concatenations.

    PYTHONPATH=$PWD nice -n 10 /work/main/.venv/bin/python \
        benchmarks/selection/experiments/exp3_classifiers.py [--dev SET C]
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from benchmarks.selection.experiments.common import (
    HEADER,
    TASKS,
    Split,
    cross_predict,
    curve,
    features,
    fmt,
    holdout_predict,
    load,
    mean_cost_per_1k,
    summary,
)

warnings.filterwarnings("ignore")


def design(split: Split, parts: tuple[str, ...], train: np.ndarray):
    blocks = []
    for part in parts:
        if part == "tfidf_word":
            vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
            qs = split.questions
            vec.fit([qs[i] for i in train])
            blocks.append(vec.transform(qs))
        else:
            x = features(split, part)
            scaler = StandardScaler().fit(x[train])
            blocks.append(sparse.csr_matrix(scaler.transform(x) / np.sqrt(x.shape[1])))
    return sparse.hstack(blocks).tocsr()


def clf_fit(parts: tuple[str, ...], model: str, c: float):
    def fit(split: Split, train: np.ndarray):
        x = design(split, parts, train)
        fitted = {}
        for t in TASKS:
            pool = train[split.tasks[train] == t]
            for j in range(split.scores.shape[1]):
                y = split.scores[pool, j] >= 0.5
                if y.all() or not y.any():
                    fitted[t, j] = float(y.mean())
                    continue
                if model == "lr":
                    est = LogisticRegression(C=c, max_iter=2000)
                    est.fit(x[pool], y)
                else:
                    est = HistGradientBoostingClassifier(
                        max_iter=100,
                        learning_rate=0.05,
                        max_leaf_nodes=8,
                        l2_regularization=1.0,
                        min_samples_leaf=20,
                    )
                    est.fit(x[pool].toarray(), y)
                fitted[t, j] = est

        def predict(split2: Split, test: np.ndarray) -> np.ndarray:
            out = np.zeros((len(test), split.scores.shape[1]), dtype=np.float32)
            for t in TASKS:
                rows = split.tasks[test] == t  # == the nearest prompt's task here
                if not rows.any():
                    continue
                xt = x[test[rows]]
                for j in range(split.scores.shape[1]):
                    est = fitted[t, j]
                    if isinstance(est, float):
                        out[rows, j] = est
                    else:
                        xx = xt.toarray() if model == "gb" else xt
                        out[rows, j] = est.predict_proba(xx)[:, 1]
            return out

        return predict

    return fit


def auc_table(split: Split, pred: np.ndarray) -> dict[str, float]:
    """Mean within-task AUC over models (models with both outcomes)."""
    out = {}
    for t in TASKS:
        rows = split.tasks == t
        aucs = []
        for j in range(split.scores.shape[1]):
            y = split.scores[rows, j] >= 0.5
            if 0 < y.sum() < len(y):
                aucs.append(roc_auc_score(y, pred[rows, j]))
        out[t] = float(np.mean(aucs))
    return out


SETS = {
    "st_question": ("st_question",),
    "tfidf_word": ("tfidf_word",),
    "lengths": ("lengths",),
    "static_prompt": ("static_prompt",),
    "st_q+tfidf+len": ("st_question", "tfidf_word", "lengths"),
}


def main() -> None:
    train = load("train")
    per_1k = mean_cost_per_1k(train, np.arange(len(train)))
    if "--dev" in sys.argv:
        i = sys.argv.index("--dev")
        name, model, c = sys.argv[i + 1], sys.argv[i + 2], float(sys.argv[i + 3])
        dev = load("dev")
        pred = holdout_predict(train, dev, clf_fit(SETS[name], model, c))
        print(HEADER)
        print(fmt(f"{model} {name} C={c} (dev)", summary(curve(pred, per_1k, dev), dev)))
        print("dev within-task AUC:", auc_table(dev, pred))
        return
    print("## train, 5-fold CV")
    print(HEADER)
    rows = []
    for name, parts in SETS.items():
        for model, cs in (("lr", (0.01, 0.1, 1.0)), ("gb", (0.0,))):
            if model == "gb" and name not in ("st_question", "lengths", "st_q+tfidf+len"):
                continue
            for c in cs:
                pred = cross_predict(train, clf_fit(parts, model, c))
                s = summary(curve(pred, per_1k, train), train)
                a = auc_table(train, pred)
                rows.append((name, model, c, s, a))
                print(
                    fmt(f"{model} {name} C={c}", s),
                    " AUC " + " ".join(f"{t[:4]}={v:.3f}" for t, v in a.items()),
                    flush=True,
                )


if __name__ == "__main__":
    main()
