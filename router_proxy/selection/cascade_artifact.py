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

Budget filling (``extra.fill``, on in artifacts trained since issue 15's tuning): the knob,
less a safety margin (``extra.budget_margin``: the share kept back because per-prompt costs
vary on new prompts), falls between two vertices of the frontier's upper convex hull; a
share of prompts, chosen by a hash of the prompt's embedding (the same prompt always gets
the same plans), gets the dearer vertex's plans so that the expected training cost meets
the budget. The knob then spends what it is given, on the hull (which beats every entry
costing less). Artifacts without ``fill`` pick one entry as above.

``extra.code_similarity``: the similarity (Jaccard of token 3-grams) at which two code
answers agree, chosen by the trainer's cross-validation; the plans were chosen with it, so
the gateway's ``stop: agree`` groups code with it (``selection/cascade.py``). Older
artifacts: the gateway's default, ``answers/extract.py`` ``CODE_SIMILARITY``.

``stages()`` is one matrix-vector product over the training prompts, an argpartition and
two lookups: numpy only, no sklearn, tens of microseconds.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from router_proxy.answers.extract import CODE_SIMILARITY
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


def draw(embedding: npt.NDArray[np.floating]) -> float:
    """A number in [0, 1) fixed by the prompt's embedding: which prompts get the dearer
    plans when the budget is filled. Rounded to 3 decimals first, so that float noise in
    the last digits (another BLAS, another batch) almost never changes it (a component
    would have to sit within ~1e-7 of a rounding boundary)."""
    rounded = np.round(np.asarray(embedding, dtype=np.float32), 3) + np.float32(0.0)  # -0 -> 0
    return zlib.crc32(rounded.astype(np.float32).tobytes()) / 2**32


def draws(embeddings: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    return np.array([draw(e) for e in embeddings], dtype=np.float64)


def hull_entries(cost: npt.NDArray[np.float64], quality: npt.NDArray[np.float64]) -> list[int]:
    """The frontier entries on its non-decreasing upper convex hull, cheapest first."""
    hull: list[int] = []
    for i in np.lexsort((-quality, cost)).tolist():
        if hull and cost[i] == cost[hull[-1]]:
            continue  # the better of equal costs came first
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (cost[b] - cost[a]) * (quality[i] - quality[a]) - (quality[b] - quality[a]) * (
                cost[i] - cost[a]
            )
            if cross < 0:
                break
            hull.pop()  # b lies on or under the segment a -> i
        hull.append(i)
    rising: list[int] = []
    for i in hull:
        if not rising or quality[i] > quality[rising[-1]]:
            rising.append(i)
    return rising


@dataclass(frozen=True)
class Mix:
    """What a budget buys: entry ``low``, and entry ``high`` for a ``share`` of prompts."""

    low: int
    high: int
    share: float

    def pick(self, draw: float) -> int:
        return self.high if draw < self.share else self.low


def fill(cost: npt.NDArray[np.float64], hull: Sequence[int], budget_per_1k: float) -> Mix:
    """Mix the two hull entries around ``budget_per_1k`` so their expected cost meets it."""
    costs = cost[list(hull)]
    j = int(np.searchsorted(costs, budget_per_1k, side="right")) - 1
    if j < 0:
        return Mix(hull[0], hull[0], 0.0)
    if j >= len(hull) - 1:
        return Mix(hull[-1], hull[-1], 0.0)
    share = (budget_per_1k - costs[j]) / (costs[j + 1] - costs[j])
    return Mix(hull[j], hull[j + 1], float(share))


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
    budget_margin: float = 0.0  # share of the knob kept back (filling only)
    hull: tuple[int, ...] | None = field(default=None)  # None: no filling, one entry
    # The similarity at which two code answers agree, as the plans were chosen with it.
    code_similarity: float = CODE_SIMILARITY

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
            filled = bool(extra.get("fill", False))
            margin = float(extra.get("budget_margin", 0.0))
            similarity = float(extra.get("code_similarity", CODE_SIMILARITY))
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
        if not 0 <= margin < 1:
            problems.append(f"budget_margin={margin}")
        if not 0 < similarity <= 1:
            problems.append(f"code_similarity={similarity}")
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
            budget_margin=margin,
            hull=tuple(hull_entries(cost, quality)) if filled else None,
            code_similarity=similarity,
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

    def same_plans(self, other: CascadeArtifact) -> bool:
        """Whether ``other`` plans every prompt as this one does at every knob (a reload
        of the same artifact, not a retrained one)."""
        return (
            self.models == other.models
            and self.plans == other.plans
            and self.budget_margin == other.budget_margin
            and self.hull == other.hull
            and np.array_equal(self.frontier_cost, other.frontier_cost)
            and np.array_equal(self.frontier_policy, other.frontier_policy)
            and np.array_equal(self.index.kinds, other.index.kinds)
            and np.array_equal(self.index.embeddings, other.index.embeddings)
        )

    def entry(self, budget_per_1k: float) -> int:
        """The frontier entry the budget buys (the cheapest when none fits); with filling,
        the dearer of the two it mixes."""
        if self.hull is not None:
            return self.mix(budget_per_1k).high
        fits = int(np.searchsorted(self.frontier_cost, budget_per_1k, side="right")) - 1
        return max(fits, 0)

    def mix(self, budget_per_1k: float) -> Mix:
        """The entries the budget buys and the share of prompts on the dearer one."""
        if self.hull is None:
            one = self.entry(budget_per_1k)
            return Mix(one, one, 0.0)
        return fill(self.frontier_cost, self.hull, budget_per_1k * (1.0 - self.budget_margin))

    def knob_for(self, entry: int) -> float:
        """The smallest ``budget_per_1k`` that buys ``entry`` outright (the margin added)."""
        return float(self.frontier_cost[entry]) / (1.0 - self.budget_margin)

    def kind(self, embedding: npt.NDArray[np.float32]) -> int:
        return self.index.of(embedding)

    def stages(self, embedding: npt.NDArray[np.float32], budget_per_1k: float) -> Stages:
        """The stages to run for the prompt whose L2-normalised vector is ``embedding``."""
        if embedding.shape != (self.index.embeddings.shape[1],):
            raise ValueError(
                f"embedding of shape {embedding.shape}; the cascade artifact has "
                f"{self.index.embeddings.shape[1]} dimensions (encoder {self.encoder})"
            )
        mix = self.mix(budget_per_1k)
        entry = mix.pick(draw(embedding)) if mix.share > 0 else mix.low
        return self.plans[self.frontier_policy[entry, self.kind(embedding)]]

    def plan_of(self, kind: int, budget_per_1k: float, draw: float = 1.0) -> Stages:
        """The plan of a prompt of ``kind`` whose ``draw`` (``draw(embedding)``) is given;
        the default draw gets the cheaper entry of a mix."""
        return self.plans[self.frontier_policy[self.mix(budget_per_1k).pick(draw), kind]]


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
