"""Per-query consensus among models' answers, with no correctness labels (CASCAL step 2).

Our data has no token log-probabilities, so each model's vote weight is a reliability:
its rate of agreement with the weighted-majority answer, clipped to [0.01, 0.99] (the
range the reference gives its log-prob confidences). That is circular, so it is iterated
like a one-coin Dawid-Skene / weighted-majority EM: start from equal weights, take each
query's weighted majority, re-estimate every model's agreement rate, repeat until the
weights settle (a few rounds). No answer (a refusal, an unparseable response) counts as
disagreeing: a model that often refuses is less reliable.

Reliability is one number per model, as in the reference; ``group_of`` can make it one per
group (e.g. per task: a model strong at multiple choice may be weak at code), but on
RouterBench's train split that lowered AIQ (0.802 vs 0.815, four 80/20 splits), so the
trainer leaves it off by default. Per query, the weights behind each distinct answer are
summed, a softmax over answers (temperature 1) gives the posterior, and a model's consensus
score is the posterior mass of the answer it gave (0 when it gave none).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Answers = Sequence[Sequence[Hashable | None]]  # rows x models, None = no answer
Matrix = npt.NDArray[np.float64]

MIN_WEIGHT, MAX_WEIGHT = 0.01, 0.99


@dataclass
class Consensus:
    scores: Matrix  # rows x models: posterior mass of the model's answer (0 if none)
    weights: Matrix  # groups x models: reliability used as vote weight
    groups: list[Hashable]  # the group of each row of `weights`
    agrees: npt.NDArray[np.bool_]  # rows x models: gave the (weighted) majority answer
    share: Matrix  # rows: share of the models whose answer is the majority (unweighted)
    rounds: int  # EM rounds run


def _codes(answers: Answers) -> npt.NDArray[np.int64]:
    """rows x models integer answer codes, -1 for no answer (codes are per row)."""
    codes = np.full((len(answers), len(answers[0]) if answers else 0), -1, dtype=np.int64)
    for i, row in enumerate(answers):
        seen: dict[Hashable, int] = {}
        for j, answer in enumerate(row):
            if answer is not None:
                codes[i, j] = seen.setdefault(answer, len(seen))
    return codes


def _posterior(codes: npt.NDArray[np.int64], weights: Matrix) -> Matrix:
    """rows x answers posterior (softmax of summed weights; only answers given count)."""
    width = int(codes.max()) + 1 if codes.size else 0
    mass = np.zeros((codes.shape[0], max(width, 1)))
    given = codes >= 0
    rows = np.broadcast_to(np.arange(codes.shape[0])[:, None], codes.shape)
    np.add.at(mass, (rows[given], codes[given]), weights[given])
    present = np.zeros_like(mass, dtype=bool)
    present[rows[given], codes[given]] = True
    logits = np.where(present, mass, -np.inf)
    top = np.max(logits, axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    exp = np.where(present, np.exp(logits - top), 0.0)
    total = exp.sum(axis=1, keepdims=True)
    posterior: Matrix = np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)
    return posterior


def _majority(codes: npt.NDArray[np.int64], posterior: Matrix) -> npt.NDArray[np.bool_]:
    best = np.argmax(posterior, axis=1)
    answered = posterior.sum(axis=1) > 0
    agrees: npt.NDArray[np.bool_] = (codes == best[:, None]) & answered[:, None]
    return agrees


def consensus(
    answers: Answers,
    group_of: Sequence[Hashable] | None = None,
    *,
    max_rounds: int = 50,
    tol: float = 1e-6,
) -> Consensus:
    """Consensus scores for a rows x models table of answers (see the module doc)."""
    codes = _codes(answers)
    n_rows, n_models = codes.shape
    keys = list(group_of) if group_of is not None else [""] * n_rows
    groups = list(dict.fromkeys(keys))
    index = np.array([groups.index(k) for k in keys], dtype=np.int64)
    weights = np.full((len(groups), n_models), 0.5)
    rounds = 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 - reported
        posterior = _posterior(codes, weights[index] if n_rows else np.zeros((0, n_models)))
        agrees = _majority(codes, posterior)
        updated = weights.copy()
        for g in range(len(groups)):
            rate = agrees[index == g].mean(axis=0)
            updated[g] = np.clip(rate, MIN_WEIGHT, MAX_WEIGHT)
        done = bool(np.max(np.abs(updated - weights), initial=0.0) < tol)
        weights = updated
        if done:
            break
    posterior = _posterior(codes, weights[index] if n_rows else np.zeros((0, n_models)))
    agrees = _majority(codes, posterior)
    rows = np.arange(n_rows)[:, None]
    scores = np.where(codes >= 0, posterior[rows, np.maximum(codes, 0)], 0.0)
    share = agrees.sum(axis=1) / max(n_models, 1)
    return Consensus(scores, weights, groups, agrees, share, rounds)
