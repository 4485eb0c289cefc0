"""A trained cascade (``router-proxy train --algorithm cascade``): which stages to run for
a prompt at a cost budget.

The artifact holds (``meta.json`` + ``arrays.npz``, no pickle):

* the training prompts' embeddings and each one's kind (an index into ``extra.kinds``):
  a prompt's kind is the majority kind of its ``neighbours`` most similar training
  prompts (cosine), ties to the nearest; the prompt alone decides it, never a label;
* ``policies``: stage plans, policies x stages x width model indices (-1 = none);
* the frontier: entries sorted by training cost (``frontier_cost``, US$ per 1k queries,
  every call counted), each with its training quality and one policy per kind
  (``frontier_policy``, entries x kinds). ``budget_per_1k`` picks the last entry whose
  training cost fits it (the cheapest entry when none does).

``stages()`` is one matrix-vector product over the training prompts, an argpartition and
two lookups: numpy only, no sklearn, tens of microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from router_proxy.selection.artifact import Artifact, ArtifactError, load_artifact

ALGORITHM = "cascade"
Stages = tuple[tuple[str, ...], ...]
Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class KindIndex:
    """A prompt's kind: the majority among its nearest training prompts."""

    embeddings: Matrix  # n x dim, unit rows
    kinds: npt.NDArray[np.int32]  # n
    count: int  # number of kinds
    neighbours: int

    def of(self, embedding: npt.NDArray[np.float32]) -> int:
        return int(self.of_batch(np.asarray(embedding, dtype=np.float32)[None, :])[0])

    def of_batch(self, embeddings: Matrix) -> npt.NDArray[np.intp]:
        sims = np.asarray(embeddings, dtype=np.float32) @ self.embeddings.T
        n, k = sims.shape[1], min(self.neighbours, self.embeddings.shape[0])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.argsort(-sims, axis=1)
        top_sims = np.take_along_axis(sims, top, axis=1)
        votes = np.zeros((sims.shape[0], self.count))
        # one vote per neighbour, plus a fraction of a vote by similarity: ties go nearer
        np.add.at(
            votes, (np.arange(sims.shape[0])[:, None], self.kinds[top]), 1.0 + 1e-3 * top_sims
        )
        out: npt.NDArray[np.intp] = np.argmax(votes, axis=1)
        empty = ~np.asarray(embeddings).any(axis=1)
        out[empty] = int(np.bincount(self.kinds, minlength=self.count).argmax())
        return out


@dataclass(frozen=True)
class CascadeArtifact:
    models: tuple[str, ...]
    encoder: str
    kind_names: tuple[str, ...]
    index: KindIndex
    plans: tuple[Stages, ...]  # decoded ``policies``
    frontier_cost: npt.NDArray[np.float64]  # entries, ascending
    frontier_quality: npt.NDArray[np.float64]
    frontier_policy: npt.NDArray[np.int32]  # entries x kinds, into ``plans``

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        encoder: str | None = None,
        candidates: Sequence[str] | None = None,
    ) -> CascadeArtifact:
        """Read and check the artifact; ``encoder``/``candidates``, when given, are what
        the gateway runs and may call: a mismatch is an ArtifactError naming both."""
        artifact = load_artifact(directory, ALGORITHM)
        loaded = cls.from_artifact(artifact, str(directory))
        loaded.check_fit(encoder, candidates)
        return loaded

    @classmethod
    def from_artifact(cls, artifact: Artifact, where: str = "cascade artifact") -> CascadeArtifact:
        arrays, extra = artifact.arrays, artifact.extra
        try:
            vectors = np.asarray(arrays["embeddings"], dtype=np.float32)
            kinds = np.asarray(arrays["row_kinds"], dtype=np.int32)
            policies = np.asarray(arrays["policies"], dtype=np.int64)
            cost = np.asarray(arrays["frontier_cost"], dtype=np.float64)
            quality = np.asarray(arrays["frontier_quality"], dtype=np.float64)
            chosen = np.asarray(arrays["frontier_policy"], dtype=np.int32)
            names = tuple(str(k) for k in extra["kinds"])
            neighbours = int(extra["neighbours"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: not a usable cascade artifact (missing {exc})") from None
        models = tuple(artifact.models)
        problems = []
        if vectors.ndim != 2 or kinds.shape != (vectors.shape[0],) or not len(kinds):
            problems.append(f"embeddings {vectors.shape} and row kinds {kinds.shape}")
        if len(kinds) and not 0 <= kinds.min() <= kinds.max() < len(names):
            problems.append("a row kind outside the kinds")
        if policies.ndim != 3 or not len(policies) or policies.max() >= len(models):
            problems.append(f"policies {policies.shape} for {len(models)} models")
        entries = len(cost)
        if not entries or quality.shape != (entries,) or chosen.shape != (entries, len(names)):
            problems.append(f"frontier {cost.shape}, {quality.shape}, {chosen.shape}")
        elif not 0 <= chosen.min() <= chosen.max() < len(policies) or np.any(np.diff(cost) < 0):
            problems.append("a frontier policy out of range or costs not ascending")
        if neighbours < 1:
            problems.append(f"neighbours={neighbours}")
        if problems:
            raise ArtifactError(f"{where}: cascade artifact does not fit: {'; '.join(problems)}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = np.ascontiguousarray(vectors / np.where(norms > 0, norms, 1.0), dtype=np.float32)
        return cls(
            models=models,
            encoder=artifact.encoder,
            kind_names=names,
            index=KindIndex(unit, kinds, len(names), neighbours),
            plans=tuple(_decode(p, models, where) for p in policies),
            frontier_cost=cost,
            frontier_quality=quality,
            frontier_policy=chosen,
        )

    def check_fit(self, encoder: str | None, candidates: Sequence[str] | None) -> None:
        if encoder is not None and encoder != self.encoder:
            raise ArtifactError(
                f"the cascade artifact was trained with encoder '{self.encoder}' but this "
                f"gateway runs '{encoder}'; retrain it or set `embeddings` to match"
            )
        if candidates is not None:
            unknown = sorted({m for plan in self.plans for s in plan for m in s} - set(candidates))
            if unknown:
                raise ArtifactError(
                    f"the cascade artifact calls model(s) {unknown} that are not among the "
                    f"candidates {list(candidates)}"
                )

    def entry(self, budget_per_1k: float) -> int:
        """The frontier entry the budget buys (the cheapest when none fits)."""
        fits = int(np.searchsorted(self.frontier_cost, budget_per_1k, side="right")) - 1
        return max(fits, 0)

    def kind(self, embedding: npt.NDArray[np.float32]) -> int:
        return self.index.of(embedding)

    def stages(self, embedding: npt.NDArray[np.float32], budget_per_1k: float) -> Stages:
        """The stages to run for the prompt whose L2-normalised vector is ``embedding``."""
        if embedding.shape != (self.index.embeddings.shape[1],):
            raise ValueError(
                f"embedding of shape {embedding.shape}; the cascade artifact has "
                f"{self.index.embeddings.shape[1]} dimensions (encoder {self.encoder})"
            )
        return self.plans[self.frontier_policy[self.entry(budget_per_1k), self.kind(embedding)]]

    def plan_of(self, kind: int, budget_per_1k: float) -> Stages:
        return self.plans[self.frontier_policy[self.entry(budget_per_1k), kind]]


def _decode(policy: npt.NDArray[np.int64], models: tuple[str, ...], where: str) -> Stages:
    stages = tuple(tuple(models[m] for m in stage if m >= 0) for stage in policy)
    stages = tuple(s for s in stages if s)
    if not stages:
        raise ArtifactError(f"{where}: a cascade policy with no stage")
    return stages


def encode(plans: Sequence[Stages], models: Sequence[str]) -> npt.NDArray[np.int32]:
    """``plans`` as the ``policies`` array (plans x stages x width, -1 padded)."""
    depth = max(len(p) for p in plans)
    width = max(len(s) for p in plans for s in p)
    out = np.full((len(plans), depth, width), -1, dtype=np.int32)
    position = {m: i for i, m in enumerate(models)}
    for i, plan in enumerate(plans):
        for j, stage in enumerate(plan):
            out[i, j, : len(stage)] = [position[m] for m in stage]
    return out
