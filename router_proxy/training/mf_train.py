"""Train the matrix-factorization selector (``router-proxy train --algorithm mf``).

RouteLLM's recipe (Ong et al. 2024), extended to N models (model: ``selection/mf.py``):
every (better, worse) pair of a row's ``scores`` (ties dropped) is a Bradley-Terry
example, loss = binary cross-entropy of sigmoid(s(better) - s(worse)); Gaussian noise on
the prompt embeddings; Adam (lr 3e-4 by default) with weight decay 1e-5 (L2, as torch's
Adam). Pure numpy, vectorised per batch of rows: each row's model scores are computed once
and all its pairs come from one (rows x models x models) mask.

Our additions, all within the training file:
- Embeddings are standardised per dimension (few-shot prompts of one task embed within
  cosine 0.99 of each other: raw coordinates hide the question in the task direction).
  RouteLLM's noise, std 0.05 on OpenAI embeddings whose coordinates are ~0.026, is ~2 per
  coordinate's spread: hence ``noise: 2.0`` on standardised coordinates.
- Cross-fitting: the rows are split into ``folds`` (stratified by task); one model is
  trained per fold on the other folds and stopped early on its own fold (pairwise loss).
  Every row thus gets a score from a model that never saw it, and the quality head
  (``selection/mf.py``) is fitted on those out-of-fold scores, so its confidence is that
  of unseen prompts. The artifact keeps all fold models (stacked arrays); serving averages
  their score matrices, which folds into one matrix at load (no cost per request).
- Each pair is weighed by its score difference (``margin_weights``): no change for 0/1
  scores; with mean-of-samples scores (open7) a 0.9-vs-0.1 pair counts more than a
  0.2-vs-0.1 one (+0.5 points of routed quality in cross-validation on open7's training
  part).
- ``folds: 1`` trains one model on every row for ``epochs`` and fits the head on the same
  rows (quick, and overconfident: for tests and experiments).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from router_proxy.selection.artifact import Artifact
from router_proxy.selection.mf import Matrix, score_kernel, unit_rows
from router_proxy.training.data import TrainingData
from router_proxy.training.extra import require_tqdm

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Pairs = npt.NDArray[np.bool_] | npt.NDArray[np.float64]  # the pairs, or their weights


@dataclass(frozen=True)
class MfOptions:
    dim: int = 128  # model-vector / projection size
    epochs: int = 100  # the most; early stopping on each fold may end sooner
    lr: float = 3e-4
    weight_decay: float = 1e-5
    noise: float = 2.0  # std of the Gaussian noise on standardised embeddings
    batch_rows: int = 4  # rows per Adam step (a few dozen pairs)
    folds: int = 5  # cross-fitting folds; 1: one model, no early stopping
    patience: int = 10  # epochs without validation improvement before stopping
    standardize: bool = True
    margin_weights: bool = True  # weigh each pair by its score difference
    calib_l2: float = 300.0  # L2 penalty on the quality head's difficulty weights
    seed: int = 0
    progress: bool = True

    @classmethod
    def parse(cls, options: dict[str, Any]) -> MfOptions:
        """From ``train``'s options (strings from the command line are converted)."""
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown mf option(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in options.items():
            kind = type(getattr(defaults, name))
            if kind is bool and isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            values[name] = kind(value)
        if values.get("folds", defaults.folds) < 1:
            raise ValueError("mf option folds must be at least 1")
        return cls(**values)


def preference_mask(scores: npt.NDArray[np.floating]) -> Mask:
    """rows x models x models: [r, i, j] when model i scored strictly higher than j on row r
    (NaN, a missing score, is never part of a pair; ties drop out)."""
    y = np.asarray(scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mask: Mask = y[:, :, None] > y[:, None, :]
    return mask


def fold_ids(tasks: list[str], k: int, seed: int) -> npt.NDArray[np.int64]:
    """A fold number per row, each task spread evenly over the k folds (seeded)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(tasks), dtype=np.int64)
    for task in sorted(set(tasks)):
        idx = np.array([i for i, t in enumerate(tasks) if t == task])
        rng.shuffle(idx)
        out[idx] = np.arange(len(idx)) % k
    return out


class BradleyTerryMf:
    """The MF parameters, their pairwise loss and gradient, and Adam."""

    NAMES = ("v", "W", "w")

    def __init__(self, n_models: int, in_dim: int, dim: int, rng: np.random.Generator) -> None:
        # torch's defaults: N(0, 1) embeddings, U(+-1/sqrt(fan_in)) linear layers.
        self.p: dict[str, Floats] = {
            "v": rng.standard_normal((n_models, dim)),
            "W": rng.uniform(-1, 1, (dim, in_dim)) / np.sqrt(in_dim),
            "w": rng.uniform(-1, 1, dim) / np.sqrt(dim),
        }
        self.m = {k: np.zeros_like(a) for k, a in self.p.items()}
        self.s = {k: np.zeros_like(a) for k, a in self.p.items()}
        self.t = 0

    def scores(self, x: Floats) -> Floats:
        vn = unit_rows(self.p["v"]).astype(np.float64)
        out: Floats = (x @ self.p["W"].T) @ (vn * self.p["w"]).T
        return out

    def loss_grad(self, x: Floats, pairs: Pairs) -> tuple[float, dict[str, Floats]]:
        """Mean pairwise BCE over the batch's pairs and its gradient."""
        v, W, w = self.p["v"], self.p["W"], self.p["w"]
        norms = np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        vn = v / norms
        z = x @ W.T  # rows x dim
        s = z @ (vn * w).T  # rows x models
        margin = s[:, :, None] - s[:, None, :]
        n = float(pairs.sum()) or 1.0
        loss = float((np.logaddexp(0.0, -margin) * pairs).sum() / n)
        r = -0.5 * (1.0 - np.tanh(0.5 * margin)) * pairs / n  # dL/dmargin
        g = r.sum(axis=2) - r.sum(axis=1)  # dL/ds
        gz = (g @ vn) * w
        gvn = (g.T @ z) * w
        grads = {
            "W": gz.T @ x,
            "w": ((g.T @ z) * vn).sum(axis=0),
            "v": (gvn - vn * (gvn * vn).sum(axis=1, keepdims=True)) / norms,
        }
        return loss, grads

    def adam(self, grads: dict[str, Floats], lr: float, weight_decay: float) -> None:
        """One Adam step (torch's, with L2 weight decay), in place."""
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.t += 1
        step = lr / (1 - b1**self.t)
        root = np.sqrt(1 - b2**self.t)
        for k, grad in grads.items():
            p, m, s = self.p[k], self.m[k], self.s[k]
            grad += weight_decay * p
            m *= b1
            m += (1 - b1) * grad
            s *= b2
            grad *= grad
            s += (1 - b2) * grad
            denom = np.sqrt(s)
            denom /= root
            denom += eps
            np.divide(m, denom, out=denom)
            denom *= step
            p -= denom

    def snapshot(self) -> dict[str, Floats]:
        return {k: a.copy() for k, a in self.p.items()}

    def mean_loss(self, x: Floats, pairs: Pairs) -> float:
        return self.loss_grad(x, pairs)[0] if pairs.any() else float("nan")


def fit_mf(
    x: Floats, pairs: Pairs, x_val: Floats, pairs_val: Pairs, opts: MfOptions, label: str = "mf"
) -> tuple[dict[str, Floats], list[tuple[float, float]]]:
    """Adam over shuffled row batches; returns the parameters of the best validation epoch
    (the last epoch when there is no validation data) and the (train, validation) mean
    pairwise loss after each epoch."""
    rng = np.random.default_rng(opts.seed)
    model = BradleyTerryMf(pairs.shape[1], x.shape[1], opts.dim, rng)
    keep = np.flatnonzero(pairs.any(axis=(1, 2)))  # rows with at least one pair
    history: list[tuple[float, float]] = []
    best, best_loss, stale = model.snapshot(), np.inf, 0
    tqdm = require_tqdm("MF training")
    bar = tqdm(range(opts.epochs), desc=label, unit="epoch", disable=not opts.progress)
    for _ in bar:
        order = rng.permutation(keep)
        for start in range(0, len(order), opts.batch_rows):
            rows = order[start : start + opts.batch_rows]
            noisy = x[rows] + opts.noise * rng.standard_normal((len(rows), x.shape[1]))
            _, grads = model.loss_grad(noisy, pairs[rows])
            model.adam(grads, opts.lr, opts.weight_decay)
        losses = (model.mean_loss(x, pairs), model.mean_loss(x_val, pairs_val))
        history.append(losses)
        bar.set_postfix(train=f"{losses[0]:.4f}", val=f"{losses[1]:.4f}")
        if not np.isfinite(losses[1]) or losses[1] < best_loss:
            best, best_loss, stale = model.snapshot(), losses[1], 0
        else:
            stale += 1
            if stale >= opts.patience:
                break
    bar.close()
    return best, history


def fit_quality(
    centred: Floats, x: Floats, scores: Floats, l2: float = 1.0, steps: int = 25
) -> tuple[float, Floats, Floats]:
    """Logistic regression quality = sigmoid(a * centred + b_model + u . x) on soft targets
    ``scores`` (rows x models, NaN ignored), by Newton steps with an L2 penalty on u.
    Returns (a, b, u). The gradient and Hessian are assembled by blocks, so the embedding
    is never copied once per model."""
    m = centred.shape[1]
    d = x.shape[1]
    ok = np.isfinite(scores)
    target = np.where(ok, scores, 0.0)
    c = np.where(ok, centred, 0.0)
    a, b, u = 0.0, np.zeros(m), np.zeros(d)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(a * c + b[None, :] + (x @ u)[:, None])))
        resid = np.where(ok, p - target, 0.0)
        w = np.where(ok, p * (1.0 - p), 0.0)
        grad = np.concatenate(
            [[(resid * c).sum()], resid.sum(axis=0), x.T @ resid.sum(axis=1) + l2 * u]
        )
        hess = np.zeros((1 + m + d, 1 + m + d))
        hess[0, 0] = (w * c * c).sum()
        hess[0, 1 : 1 + m] = hess[1 : 1 + m, 0] = (w * c).sum(axis=0)
        hess[0, 1 + m :] = hess[1 + m :, 0] = x.T @ (w * c).sum(axis=1)
        hess[1 : 1 + m, 1 : 1 + m] = np.diag(w.sum(axis=0))
        hess[1 : 1 + m, 1 + m :] = (x.T @ w).T
        hess[1 + m :, 1 : 1 + m] = x.T @ w
        hess[1 + m :, 1 + m :] = (x * w.sum(axis=1)[:, None]).T @ x + l2 * np.eye(d)
        step = np.linalg.solve(hess + 1e-6 * np.eye(1 + m + d), grad)
        a, b, u = a - step[0], b - step[1 : 1 + m], u - step[1 + m :]
        if np.abs(step).max() < 1e-4:
            break
    return float(a), b, u


def standardizer(embeddings: Matrix, on: bool) -> tuple[Floats, Floats]:
    """Per-dimension mean and spread of the training embeddings (0 and 1 when off)."""
    e = embeddings.astype(np.float64)
    if not on:
        return np.zeros(e.shape[1]), np.ones(e.shape[1])
    return e.mean(axis=0), np.maximum(e.std(axis=0), 1e-6)


def centred_scores(params: dict[str, Floats], x: Floats) -> Floats:
    """The MF scores of rows ``x`` minus their mean over models."""
    kernel = score_kernel(*(params[k].astype(np.float32) for k in BradleyTerryMf.NAMES))
    raw = x @ kernel.T.astype(np.float64)
    out: Floats = raw - raw.mean(axis=1, keepdims=True)
    return out


@dataclass
class Fitted:
    params: dict[str, Floats]  # stacked over fold models when cross-fitted
    calib: tuple[float, Floats, Floats]  # the quality head (a, b, u)
    histories: list[list[tuple[float, float]]]


def cross_fit(x: Floats, scores: Floats, tasks: list[str], opts: MfOptions) -> Fitted:
    """One model per fold, early-stopped on it; the quality head on out-of-fold scores."""
    pairs: Pairs = preference_mask(scores)
    if opts.margin_weights:
        pairs = pairs * np.abs(scores[:, :, None] - scores[:, None, :])
    if opts.folds == 1:
        none = np.zeros(0, dtype=np.int64)
        params, history = fit_mf(x, pairs, x[none], pairs[none], opts)
        calib = fit_quality(centred_scores(params, x), x, scores, opts.calib_l2)
        return Fitted(params, calib, [history])
    folds = fold_ids(tasks, opts.folds, opts.seed)
    members, histories = [], []
    oof = np.zeros_like(scores)
    for f in range(opts.folds):
        fit, val = folds != f, folds == f
        label = f"mf fold {f + 1}/{opts.folds}"
        member, history = fit_mf(x[fit], pairs[fit], x[val], pairs[val], opts, label)
        members.append(member)
        histories.append(history)
        oof[val] = centred_scores(member, x[val])
    stacked = {k: np.stack([m[k] for m in members]) for k in BradleyTerryMf.NAMES}
    return Fitted(stacked, fit_quality(oof, x, scores, opts.calib_l2), histories)


def train_mf(data: TrainingData, options: dict[str, Any]) -> Artifact:
    """The ``mf`` trainer (``TRAINERS["mf"]``): TrainingData with scores -> Artifact."""
    opts = MfOptions.parse(options)
    if len(data.models) < 2:
        raise ValueError("mf needs scores for at least two models in every row")
    scores = data.score_matrix().astype(np.float64)
    mean, scale = standardizer(data.embeddings, opts.standardize)
    x = (data.embeddings.astype(np.float64) - mean) / scale
    fitted = cross_fit(x, scores, [r.task for r in data.rows], opts)
    a, b, u = fitted.calib
    arrays = {k: fitted.params[k].astype(np.float32) for k in BradleyTerryMf.NAMES}
    arrays |= {
        "mean": mean.astype(np.float32),
        "scale": scale.astype(np.float32),
        "calib_a": np.array([a], dtype=np.float32),
        "calib_b": b.astype(np.float32),
        "calib_u": u.astype(np.float32),
        "cost_per_1k": data.cost_per_1k(),
    }
    return Artifact(
        algorithm="mf",
        models=list(data.models),
        encoder=data.encoder,
        arrays=arrays,
        data_hash=data.data_hash,
        params=dataclasses.asdict(opts),
        extra={
            "rows": len(data.rows),
            "pairs": int(preference_mask(scores).sum()),
            "members": len(fitted.histories),
            "best_epochs": [_best_epoch(h) for h in fitted.histories],
            "loss": [[[round(t, 5), round(v, 5)] for t, v in h] for h in fitted.histories],
        },
    )


def _best_epoch(history: list[tuple[float, float]]) -> int:
    val = np.array([v for _, v in history])
    return int(np.nanargmin(val)) + 1 if np.isfinite(val).any() else len(history)
