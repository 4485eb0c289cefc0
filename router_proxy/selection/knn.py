"""``algorithm: knn``: RouterBench's k-nearest-neighbours router (Hu et al. 2024).

The artifact holds the training prompts' embeddings and every model's score on them. For
a new prompt, the predicted quality of model m is a weighted mean of m's scores on the k
training prompts most similar to it (cosine on L2-normalised embeddings); the ranking is
``predicted quality - cost_weight * cost_per_1k`` (``LearnedSelector.rank``).

Weights (our choice; RouterBench takes the plain mean): a softmax of the neighbours'
similarities divided by ``temperature``. Within one kind of prompt the similarities are
close together (few-shot prompts of one task share most of their text), so the weights
there are nearly even, while a neighbour from another kind of prompt (similarity lower by
0.1 or more) counts e^-1 or less of a close one at temperature 0.1: a soft gate rather
than a hard cut at k. ``1 / (1 - sim)`` was rejected: near-duplicates (similarity 0.9996)
would get thousands of times the weight of the rest of the neighbourhood. With
``weights: uniform`` it is RouterBench's mean.

Shrink (our extension): each training prompt's scores are pulled ``shrink`` of the way
toward the mean of its group (its ``task`` in the training data), a hierarchical prior
against neighbourhood noise; the trainer's module says why. The trainer picks k, the
temperature and the shrink by leave-one-out on the training data unless they are given.

Selection is one matrix-vector product, an ``argpartition`` and a weighted sum: tens of
microseconds for a few thousand training prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from router_proxy.embeddings.base import normalise
from router_proxy.selection.artifact import Artifact, ArtifactError
from router_proxy.selection.learned import LearnedSelector, Vector

if TYPE_CHECKING:
    pass

Matrix = npt.NDArray[np.float32]
CHUNK = 1024  # query rows per block in batch prediction (bounds the similarity block)


def neighbour_weights(sims: Matrix, temperature: float | None) -> Matrix:
    """Row-wise weights (summing to 1) for neighbours with similarities ``sims`` (rows x
    k): softmax of sim / temperature, or even weights when ``temperature`` is None."""
    if temperature is None:
        return np.full(sims.shape, 1.0 / sims.shape[-1], dtype=np.float32)
    scaled = (sims - sims.max(axis=-1, keepdims=True)) / np.float32(temperature)
    weights = np.exp(scaled, dtype=np.float32)
    out: Matrix = weights / weights.sum(axis=-1, keepdims=True)
    return out


def shrunk_scores(artifact: Artifact, scores: Matrix) -> Matrix:
    """Each training prompt's scores pulled ``shrink`` of the way toward its group's mean
    (``training/knn_train.py`` says why). Done once at load: serving is the plain
    weighted mean. Artifacts from before ``shrink`` existed have none: scores as stored."""
    try:
        shrink = float(artifact.extra.get("shrink") or 0.0)
    except (TypeError, ValueError):
        raise ArtifactError("knn artifact has a shrink that is not a number") from None
    if shrink == 0.0:
        return scores
    groups, means = artifact.arrays.get("groups"), artifact.arrays.get("group_means")
    if groups is None or means is None:
        raise ArtifactError(f"knn artifact has shrink={shrink} but no groups")
    if not 0.0 < shrink <= 1.0:
        raise ArtifactError(f"knn artifact has shrink={shrink}, outside 0..1")
    if groups.shape != (scores.shape[0],) or means.shape[1:] != scores.shape[1:]:
        raise ArtifactError(
            f"knn artifact groups do not fit: groups {groups.shape}, means {means.shape}, "
            f"scores {scores.shape}"
        )
    if groups.size and not 0 <= groups.min() <= groups.max() < means.shape[0]:
        raise ArtifactError("knn artifact has a group index outside its group means")
    out: Matrix = (1.0 - shrink) * scores + shrink * means[groups]
    return out


@dataclass(frozen=True)
class KnnIndex:
    """The neighbour search and the weighted mean, free of any selector plumbing."""

    embeddings: Matrix  # n x dim, unit rows, float32, C order
    scores: Matrix  # n x models
    k: int
    temperature: float | None  # None: RouterBench's even mean

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> KnnIndex:
        try:
            vectors, scores = artifact.arrays["embeddings"], artifact.arrays["scores"]
            k = int(artifact.extra["k"])
            raw = artifact.extra.get("temperature")
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"not a usable knn artifact: missing {exc}") from None
        if vectors.ndim != 2 or scores.shape != (vectors.shape[0], len(artifact.models)):
            raise ArtifactError(
                f"knn artifact arrays do not fit: embeddings {vectors.shape}, "
                f"scores {scores.shape}, {len(artifact.models)} models"
            )
        if k < 1 or vectors.shape[0] == 0:
            raise ArtifactError(f"knn artifact has k={k} and {vectors.shape[0]} prompts")
        return cls(
            embeddings=np.ascontiguousarray(normalise(vectors.astype(np.float32))),
            scores=np.ascontiguousarray(shrunk_scores(artifact, scores), dtype=np.float32),
            k=min(k, vectors.shape[0]),
            temperature=None if raw is None else float(raw),
        )

    @property
    def prior(self) -> Vector:
        """Mean score per model: the answer for a prompt with no direction (empty text)."""
        mean: Vector = self.scores.mean(axis=0)
        return mean

    def predict(self, embedding: Vector) -> Vector:
        sims = self.embeddings @ embedding
        n = sims.shape[0]
        if not sims.any():
            return self.prior
        top = np.argpartition(sims, n - self.k)[n - self.k :] if self.k < n else slice(None)
        weights = neighbour_weights(sims[top], self.temperature)
        predicted: Vector = weights @ self.scores[top]
        return predicted

    def predict_batch(self, embeddings: Matrix) -> Matrix:
        out = np.empty((embeddings.shape[0], self.scores.shape[1]), dtype=np.float32)
        for start in range(0, embeddings.shape[0], CHUNK):
            block = np.asarray(embeddings[start : start + CHUNK], dtype=np.float32)
            out[start : start + len(block)] = self._block(block)
        empty = ~np.asarray(embeddings, dtype=np.float32).any(axis=1)
        out[empty] = self.prior
        return out

    def _block(self, queries: Matrix) -> Matrix:
        sims = queries @ self.embeddings.T
        n, k = sims.shape[1], self.k
        if k < n:
            top = np.argpartition(sims, n - k, axis=1)[:, n - k :]
        else:
            top = np.broadcast_to(np.arange(n), sims.shape)
        weights = neighbour_weights(np.take_along_axis(sims, top, axis=1), self.temperature)
        predicted: Matrix = np.einsum("qk,qkm->qm", weights, self.scores[top])
        return predicted


class KnnSelector(LearnedSelector):
    algorithm = "knn"

    @classmethod
    def predictor(cls, artifact: Artifact) -> KnnIndex:
        return KnnIndex.from_artifact(artifact)
