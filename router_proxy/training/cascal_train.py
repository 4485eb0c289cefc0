"""Train the CASCAL selector (``router-proxy train --algorithm cascal``).

Query-only: reads each row's ``prompt`` (through the cached embeddings), ``task`` (a
grouping hint: the answer format and the first level of niches) and
``responses``; never ``scores``. ``costs`` feed only ``cost_per_1k``, which is a price,
not a label. The data must be loaded with ``TrainingData.load(paths, encoder,
field="responses")`` so that ``data.models`` are the models with a response in every row
(the default ``field="scores"`` would make the model list depend on the labels).

Steps (``shared/ALGORITHMS.md``, CASCAL): answers (``answers.py``) -> consensus per query
(``consensus.py``) -> skill niches (``niches.py``) -> artifact: niche centroids, each
niche's mean consensus per model, the global mean consensus, ``cost_per_1k``, and the
inference settings. ``far_distance`` (beyond it, blend toward the global ranking) is the
99th percentile of the training prompts' distance to their nearest niche, clipped to
[0.35, 0.5] (the reference's range): how far is "far" depends on the encoder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from router_proxy.selection.artifact import Artifact
from router_proxy.selection.cascal import SCALES
from router_proxy.training.answers import CODE_SIMILARITY, extract_rows, task_formats
from router_proxy.training.consensus import consensus
from router_proxy.training.data import TrainingData
from router_proxy.training.niches import NicheOptions, build_niches, unit


@dataclass(frozen=True)
class CascalOptions:
    nearest: int = 3  # niches mixed per prompt
    distance_temperature: float = 0.1
    ranking_temperature: float = 0.1
    far_distance: float = -1.0  # < 0: from the training prompts (module doc)
    far_quantile: float = 0.99
    scale: str = "ranking"  # or "consensus" (see selection/cascal.py)
    code_similarity: float = CODE_SIMILARITY
    # Rows' `task` as a grouping hint: the first level of the niche hierarchy, and
    # (off by default: the reference weighs per model) a reliability per task.
    niches_by_task: bool = True
    reliability_by_task: bool = False
    k_min: int = 2
    k_max: int = 5
    min_silhouette: float = 0.1
    merge_distance: float = 0.15
    majority_share: float = 0.5
    seed: int = 0

    @classmethod
    def parse(cls, options: dict[str, Any]) -> CascalOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ValueError(f"unknown cascal option(s) {unknown}; known: {sorted(names)}")
        parsed = cls(**{k: type(getattr(cls(), k))(v) for k, v in options.items()})
        if parsed.scale not in SCALES:
            raise ValueError(f"cascal option scale must be one of {SCALES}")
        return parsed

    def niche_options(self) -> NicheOptions:
        return NicheOptions(
            k_min=self.k_min,
            k_max=self.k_max,
            min_silhouette=self.min_silhouette,
            merge_distance=self.merge_distance,
            majority_share=self.majority_share,
            seed=self.seed,
        )


def train_cascal(data: TrainingData, options: dict[str, Any]) -> Artifact:
    """A CASCAL artifact from prompts and responses only (module doc)."""
    opts = CascalOptions.parse(options)
    if not data.models:
        raise ValueError("no model has a response in every row (load with field='responses')")
    rows = data.rows
    answers = extract_rows(rows, data.models, opts.code_similarity)
    tasks = [row.task for row in rows]
    votes = consensus(answers, tasks if opts.reliability_by_task else None)
    niches = build_niches(
        data.embeddings, votes, tasks if opts.niches_by_task else None, opts.niche_options()
    )
    x = unit(np.asarray(data.embeddings, dtype=np.float64))
    nearest = 1.0 - np.max(x @ niches.centroids.T, axis=1)
    far = opts.far_distance
    if far < 0:
        far = float(np.clip(np.quantile(nearest, opts.far_quantile), 0.35, 0.5))
    formats: dict[str, dict[str, int]] = {}
    for row, fmt in zip(rows, task_formats(rows), strict=True):
        per_task = formats.setdefault(row.task or "(no task)", {})
        per_task[fmt] = per_task.get(fmt, 0) + 1
    return Artifact(
        algorithm="cascal",
        models=list(data.models),
        encoder=data.encoder,
        arrays={
            "centroids": niches.centroids.astype(np.float32),
            "niche_consensus": niches.consensus.astype(np.float32),
            "niche_sizes": niches.sizes,
            "global_consensus": votes.scores.mean(axis=0).astype(np.float32),
            "cost_per_1k": data.cost_per_1k(),
        },
        data_hash=data.data_hash,
        params=dataclasses.asdict(opts),
        extra={
            "nearest": opts.nearest,
            "distance_temperature": opts.distance_temperature,
            "ranking_temperature": opts.ranking_temperature,
            "far_distance": far,
            "scale": opts.scale,
            "niches": len(niches.centroids),
            "formats": formats,  # task -> answer format -> rows
            "reliability": {
                str(group): dict(zip(data.models, map(float, row), strict=True))
                for group, row in zip(votes.groups, votes.weights, strict=True)
            },
            "em_rounds": votes.rounds,
            "clear_majority": float(np.mean(votes.share >= opts.majority_share)),
        },
    )
