"""Idea 4a: a pairwise "does the cheap model suffice?" classifier, per task.

Target, per task: the strong model is right where the task's best cheap model is wrong
(the only rows where escalating pays). Logistic regression on the question features
(MiniLM question embedding, TF-IDF, lengths), C from a small grid, 5-fold CV on train;
reported as out-of-fold AUC (0.5 = no signal). Pairs: ARC Yi-34B -> GPT-4, Winogrande
Yi-34B -> GPT-4, MBPP GPT-3.5 -> GPT-4.

    PYTHONPATH=$PWD nice -n 10 /work/main/.venv/bin/python \
        benchmarks/selection/experiments/exp6_pairwise.py
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from benchmarks.selection.experiments.common import folds, load
from benchmarks.selection.experiments.exp3_classifiers import design

warnings.filterwarnings("ignore")
PAIRS = {
    "arc_challenge": ("zero-one-ai/Yi-34B-Chat", "gpt-4-1106-preview"),
    "winogrande": ("zero-one-ai/Yi-34B-Chat", "gpt-4-1106-preview"),
    "mbpp": ("gpt-3.5-turbo-1106", "gpt-4-1106-preview"),
}
SETS = {
    "st_question": ("st_question",),
    "tfidf_word": ("tfidf_word",),
    "lengths": ("lengths",),
    "all": ("st_question", "tfidf_word", "lengths"),
}


def main() -> None:
    train = load("train")
    fold = folds(train.tasks)
    print(
        "| task | cheap -> strong | positives | features | C | OOF AUC |\n"
        "|---|---|---:|---|---:|---:|"
    )
    for task, (cheap, strong) in PAIRS.items():
        rows = np.flatnonzero(train.tasks == task)
        jc, js = train.models.index(cheap), train.models.index(strong)
        y = (train.scores[rows, js] > train.scores[rows, jc]).astype(int)
        for name, parts in SETS.items():
            for c in (0.01, 0.1, 1.0):
                pred = np.zeros(len(rows))
                for f in range(fold.max() + 1):
                    fit, held = rows[fold[rows] != f], fold[rows] == f
                    x = design(train, parts, fit)
                    model = LogisticRegression(C=c, max_iter=2000).fit(
                        x[fit], (train.scores[fit, js] > train.scores[fit, jc])
                    )
                    pred[held] = model.predict_proba(x[rows[held]])[:, 1]
                print(
                    f"| {task} | {cheap.split('/')[-1]} -> {strong} | {y.mean():.3f} | "
                    f"{name} | {c} | {roc_auc_score(y, pred):.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
