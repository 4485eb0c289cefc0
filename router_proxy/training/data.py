"""Training data for a selector: the rows, their prompt embeddings (cached), the models.

Embedding a dataset is the slow part of training and evaluation, so vectors are cached
on disk under ``$ROUTER_PROXY_CACHE`` (default ``~/.cache/router-proxy``), keyed by the
encoder and a hash of the prompts: a second run on the same data reads them back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from router_proxy.embeddings.base import Encoder
from router_proxy.training.dataset import RoutingRow, data_hash, load_rows, models_of
from router_proxy.training.extra import require_tqdm

Matrix = npt.NDArray[np.float32]
BATCH = 256


def cache_dir() -> Path:
    root = os.environ.get("ROUTER_PROXY_CACHE") or Path.home() / ".cache" / "router-proxy"
    return Path(root) / "embeddings"


def embed_prompts(prompts: Sequence[str], encoder: Encoder, *, progress: bool = True) -> Matrix:
    """L2-normalised embeddings of ``prompts`` (one row each), from the cache if present."""
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(prompt.encode("utf-8", "surrogatepass") + b"\0")
    safe_name = encoder.name.replace("/", "_").replace(":", "_")
    path = cache_dir() / safe_name / f"{digest.hexdigest()[:32]}.npy"
    if path.is_file():
        cached: Matrix = np.load(path, allow_pickle=False).astype(np.float32, copy=False)
        if cached.shape[0] == len(prompts):
            return cached
    tqdm = require_tqdm("embedding prompts")
    chunks = []
    starts = range(0, len(prompts), BATCH)
    for start in tqdm(
        starts, desc=f"embedding ({encoder.name})", unit="batch", disable=not progress
    ):
        chunks.append(encoder.encode(list(prompts[start : start + BATCH])))
    vectors = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, encoder.dim))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors, allow_pickle=False)
    return vectors.astype(np.float32, copy=False)


def stratified_holdout(tasks: Sequence[str], share: float, seed: int) -> npt.NDArray[np.bool_]:
    """A mask holding out ``share`` of each task's rows (seeded), so every experiment on
    the same data and seed holds out exactly the same rows."""
    rng = np.random.default_rng(seed)
    by_task: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        by_task.setdefault(task, []).append(i)
    mask = np.zeros(len(tasks), dtype=bool)
    for task in sorted(by_task):
        index = np.array(by_task[task])
        rng.shuffle(index)
        mask[index[: round(share * len(index))]] = True
    return mask


@dataclass
class TrainingData:
    rows: list[RoutingRow]
    embeddings: Matrix  # rows x dim, aligned with `rows`
    models: list[str]  # models with a score (or, for query-only data, a response) in every row
    encoder: str
    data_hash: str

    @classmethod
    def load(
        cls,
        paths: Sequence[str | Path],
        encoder: Encoder,
        *,
        field: str = "scores",
        progress: bool = True,
    ) -> TrainingData:
        rows = load_rows(paths)
        if not rows:
            raise ValueError(f"no rows in {', '.join(map(str, paths))}")
        vectors = embed_prompts([r.prompt for r in rows], encoder, progress=progress)
        return cls(rows, vectors, models_of(rows, field), encoder.name, data_hash(paths))

    def subset(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.integer]) -> TrainingData:
        """The rows a boolean mask or an index array selects, embeddings alongside."""
        index = np.flatnonzero(keep) if keep.dtype == np.bool_ else keep
        rows = [self.rows[i] for i in index]
        return TrainingData(rows, self.embeddings[index], self.models, self.encoder, self.data_hash)

    def score_matrix(self) -> Matrix:
        """rows x models quality (NaN where a row lacks a model's score)."""
        return np.array(
            [[row.scores.get(m, np.nan) for m in self.models] for row in self.rows],
            dtype=np.float32,
        )

    def cost_matrix(self) -> Matrix:
        """rows x models US$ per call (NaN where unknown)."""
        return np.array(
            [[row.costs.get(m, np.nan) for m in self.models] for row in self.rows],
            dtype=np.float32,
        )

    def cost_per_1k(self) -> Matrix:
        """Each model's mean cost per 1,000 queries (0 where the data has no costs)."""
        costs = self.cost_matrix()
        known = ~np.isnan(costs)
        total = np.where(known, costs, 0.0).sum(axis=0)
        # Mean over the rows that have a cost; 0 for a model with none (data without costs).
        mean = np.divide(
            total, known.sum(axis=0), out=np.zeros(len(self.models)), where=known.any(axis=0)
        )
        per_1k: Matrix = (mean * 1000.0).astype(np.float32)
        return per_1k
