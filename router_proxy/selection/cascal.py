"""``algorithm: cascal``: query-only routing by skill niches (Niu et al. 2026).

Trained without correctness labels (``training/cascal_train.py``): the artifact holds
niche centroids (unit vectors in the encoder's space), each niche's mean consensus score
per model, and the global mean consensus. For a prompt:
1. cosine distance to every niche centroid; the 3 nearest are weighted by
   softmax(-distance / 0.1);
2. each niche's ranking is a softmax of its mean consensus scores at temperature 0.1 (the
   paper's); the weighted sum is the prompt's ranking;
3. if even the nearest niche is farther than ``far`` (learned from the training prompts'
   own distances, at least 0.35), blend toward the global ranking: weight
   min(1, (distance - far) / far) on the global one, so a prompt twice as far is ranked
   globally.

Scale (what ``quality - cost_weight * cost_per_1k`` subtracts from): with ``scale:
ranking`` (default) a model's value is its share of the ranking mass: 0..1, summing to 1
over the artifact's models; a niche where three models tie near the top gives each about
0.2-0.3, so ``cost_weight: 0.05`` moves a model down by 0.05 of that share per $ per 1,000
queries. With ``scale: consensus`` the value is the weighted mean consensus score itself
(the same weights and blend, no softmax): an estimate of the model's accuracy on the
prompt's niche, on the same 0..1 scale as knn's predicted quality.

Selection is a (niches x dim) product and a few small vector operations: microseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from router_proxy.selection.artifact import Artifact, ArtifactError
from router_proxy.selection.learned import LearnedSelector, Vector

if TYPE_CHECKING:
    pass

Matrix = npt.NDArray[np.float32]
SCALES = ("ranking", "consensus")


def softmax_rows(x: Matrix, temperature: float) -> Matrix:
    scaled = (x - x.max(axis=-1, keepdims=True)) / np.float32(temperature)
    exp = np.exp(scaled, dtype=np.float32)
    out: Matrix = exp / exp.sum(axis=-1, keepdims=True)
    return out


class NicheIndex:
    """Niche lookup and blending, free of selector plumbing (tests and benchmarks use it)."""

    def __init__(self, artifact: Artifact) -> None:
        try:
            centroids = artifact.arrays["centroids"].astype(np.float32)
            consensus = artifact.arrays["niche_consensus"].astype(np.float32)
            global_ = artifact.arrays["global_consensus"].astype(np.float32)
            extra = artifact.extra
            self.nearest = int(extra["nearest"])
            self.distance_temperature = float(extra["distance_temperature"])
            ranking_temperature = float(extra["ranking_temperature"])
            self.far = float(extra["far_distance"])
            self.scale = str(extra.get("scale", "ranking"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"not a usable cascal artifact: missing {exc}") from None
        n_models = len(artifact.models)
        if (
            centroids.ndim != 2
            or len(centroids) == 0
            or consensus.shape != (len(centroids), n_models)
            or global_.shape != (n_models,)
            or self.scale not in SCALES
            or self.nearest < 1
        ):
            raise ArtifactError(
                f"cascal artifact does not fit: centroids {centroids.shape}, niche_consensus "
                f"{consensus.shape}, global {global_.shape}, {n_models} models, "
                f"scale {self.scale!r}"
            )
        self.centroids = np.ascontiguousarray(centroids)
        if self.scale == "ranking":  # rankings precomputed: serving only mixes rows
            self.values = softmax_rows(consensus, ranking_temperature)
            self.global_values = softmax_rows(global_[None, :], ranking_temperature)[0]
        else:
            self.values, self.global_values = consensus, global_
        self.k = min(self.nearest, len(centroids))

    def predict(self, embedding: Vector) -> Vector:
        out: Vector = self.predict_batch(np.asarray(embedding, dtype=np.float32)[None, :])[0]
        return out

    def predict_batch(self, embeddings: Matrix) -> Matrix:
        """rows x models values for rows of (unit) embeddings."""
        queries = np.asarray(embeddings, dtype=np.float32)
        distance = 1.0 - queries @ self.centroids.T
        n = distance.shape[1]
        if self.k < n:
            top = np.argpartition(distance, self.k - 1, axis=1)[:, : self.k]
        else:
            top = np.broadcast_to(np.arange(n), distance.shape)
        near = np.take_along_axis(distance, top, axis=1)
        weights = softmax_rows(-near, self.distance_temperature)
        local = np.einsum("qk,qkm->qm", weights, self.values[top])
        # Blend toward the global ranking in proportion to how far the nearest niche is.
        alpha = np.clip((near.min(axis=1) - self.far) / self.far, 0.0, 1.0)[:, None]
        out: Matrix = ((1.0 - alpha) * local + alpha * self.global_values).astype(np.float32)
        return out


class CascalSelector(LearnedSelector):
    algorithm = "cascal"

    @classmethod
    def predictor(cls, artifact: Artifact) -> NicheIndex:
        return NicheIndex(artifact)

    @property
    def niches(self) -> NicheIndex:
        assert isinstance(self.model, NicheIndex)
        return self.model

    def describe(self) -> dict[str, Any]:
        return {
            "niches": len(self.niches.centroids),
            "nearest": self.niches.k,
            "far_distance": self.niches.far,
            "scale": self.niches.scale,
        }
