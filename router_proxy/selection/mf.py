"""``algorithm: mf``: matrix factorization (RouteLLM, Ong et al. 2024), for N models.

The model (trained by ``router-proxy train --algorithm mf``, see ``training/mf_train.py``):

    x      = (e_q - mean) / scale            standardised prompt embedding (our extension)
    s(m,q) = w . (v_m / |v_m| * (W x))       v_m: model vectors, W: projection (no bias),
                                             w: the final linear layer (one output, no bias)

trained pairwise (Bradley-Terry): P(m beats m' on q) = sigmoid(s(m,q) - s(m',q)).

Quality scale. Bradley-Terry scores are log-odds up to a per-prompt constant: if model m
answers q correctly with probability p_m, then given exactly one of m, m' is right,
P(m is the one) = sigmoid(logit p_m - logit p_m'). So the scores centred over models,
plus a per-prompt difficulty and a per-model offset, are the models' log-odds of being
right. Training fits that map by logistic regression on out-of-fold scores (each training
row scored by a model that did not see it, so the fit has the confidence of unseen
prompts); the artifact may hold several fold models (stacked arrays), whose score
matrices are averaged:

    quality(m, q) = sigmoid(a * (s(m,q) - mean_m' s(m',q)) + b_m + u . x)

and ``predict`` returns it: the probability (expected score, 0..1) that m answers q well,
on the same scale as the data's ``scores``. ``quality - cost_weight * cost_per_1k`` is then
expected quality minus the price, exactly as for kNN (``cost_weight: 0.05`` gives up 0.05
expected score for $1 per 1,000 queries); ``router-proxy calibrate`` picks it for a budget.

Every step is linear in the embedding up to the sigmoid, so the artifact's arrays fold at
load into one (models x dim) matrix and a bias: a prompt costs one small mat-vec (a few
microseconds), numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from router_proxy.selection.artifact import Artifact, ArtifactError
from router_proxy.selection.learned import LearnedSelector, Vector

Matrix = npt.NDArray[np.float32]

#: Arrays an mf artifact holds (besides ``cost_per_1k``).
MF_ARRAYS = ("v", "W", "w", "mean", "scale", "calib_a", "calib_b", "calib_u")


def unit_rows(v: npt.NDArray[np.floating]) -> Matrix:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    out: Matrix = (v / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def score_kernel(v: Matrix, W: Matrix, w: Matrix) -> Matrix:
    """The (models x embedding dim) matrix A with s(., q) = A x: the MF scores are linear in
    the standardised embedding (the model vectors and w only mix W's rows). Stacked
    parameters (a leading ensemble axis) give the mean of the members' matrices."""
    if v.ndim == 3:
        members = [score_kernel(v[k], W[k], w[k]) for k in range(v.shape[0])]
        stacked: Matrix = np.mean(members, axis=0).astype(np.float32)
        return stacked
    kernel: Matrix = ((unit_rows(v) * w[None, :]) @ W).astype(np.float32)
    return kernel


def quality_head(arrays: Mapping[str, npt.NDArray[np.floating]]) -> tuple[Matrix, Matrix]:
    """(K, c) with quality = sigmoid(K e + c) on the raw (unit) embedding e: the centred,
    calibrated scores and the difficulty term, with the standardisation folded in."""
    missing = [name for name in MF_ARRAYS if name not in arrays]
    if missing:
        raise ArtifactError(f"the mf artifact lacks arrays {missing}")
    f32 = {name: np.asarray(arrays[name], dtype=np.float32) for name in MF_ARRAYS}
    kernel = score_kernel(f32["v"], f32["W"], f32["w"])
    centred = kernel - kernel.mean(axis=0, keepdims=True)
    on_x = float(f32["calib_a"].reshape(-1)[0]) * centred + f32["calib_u"][None, :]
    # x = (e - mean) / scale, so K x = (K / scale) e - (K / scale) mean.
    on_e = on_x / f32["scale"][None, :]
    bias = f32["calib_b"] - on_e @ f32["mean"]
    return on_e.astype(np.float32), bias.astype(np.float32)


def sigmoid(z: npt.NDArray[np.floating]) -> Matrix:
    out: Matrix = (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)
    return out


@dataclass(frozen=True)
class MfModel:
    """The folded model: quality = sigmoid(kernel @ e + bias), one row per artifact model."""

    kernel: Matrix  # models x embedding dim
    bias: Matrix  # models

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> MfModel:
        kernel, bias = quality_head(artifact.arrays)
        if kernel.shape[0] != len(artifact.models):
            raise ArtifactError(
                f"the mf artifact has {kernel.shape[0]} model vectors for "
                f"{len(artifact.models)} models"
            )
        return cls(np.ascontiguousarray(kernel), bias)

    def predict(self, embedding: Vector) -> Vector:
        """Expected quality (0..1) of every artifact model for one prompt."""
        return sigmoid(self.kernel @ embedding + self.bias)

    def predict_batch(self, embeddings: Matrix) -> Matrix:
        """Expected quality, prompts x artifact models."""
        return sigmoid(np.asarray(embeddings, dtype=np.float32) @ self.kernel.T + self.bias)


class MfSelector(LearnedSelector):
    algorithm: ClassVar[str] = "mf"

    @classmethod
    def predictor(cls, artifact: Artifact) -> MfModel:
        return MfModel.from_artifact(artifact)
