"""What the learned selectors (knn, mf, cascal) share: params, artifact checks and the
ranking rule ``predicted quality - cost_weight * cost``.

Cost is the model's mean cost in US$ per 1,000 queries on the training data (what the
artifact records as ``cost_per_1k``), so ``cost_weight: 0.05`` trades 0.05 points of
quality for one dollar per thousand queries. Models with no recorded cost count as free.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.embeddings.registry import encoder_name
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.selection.artifact import (
    Artifact,
    ArtifactError,
    check_fit,
    load_artifact,
    read_meta,
)
from router_proxy.selection.base import Selector

if TYPE_CHECKING:
    from router_proxy.config.schema import Config, ModelConfig
    from router_proxy.resources import BuildContext

Vector = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]


class Predictor(Protocol):
    """An algorithm's model, built from its artifact: predicted quality per artifact model."""

    def predict(self, embedding: Vector) -> Vector: ...

    def predict_batch(self, embeddings: Matrix) -> Matrix: ...


class LearnedParams(StrictModel):
    artifact: Path = Field(description="directory written by `router-proxy train`")
    cost_weight: float = Field(
        default=0.0, ge=0, description="quality points traded per US$ per 1,000 queries"
    )


class LearnedSelector(Selector[LearnedParams]):
    algorithm: ClassVar[str]
    config_model = LearnedParams

    def __init__(
        self,
        candidates: tuple[str, ...],
        models: Mapping[str, ModelConfig],
        params: LearnedParams,
        artifact: Artifact,
        encoder: SharedEncoder,
    ) -> None:
        super().__init__(candidates, models, params)
        self.artifact = artifact
        self.encoder = encoder
        self.model = self.predictor(artifact)
        # Positions of the candidates in the artifact's model order, resolved once.
        self.index = np.array([artifact.models.index(c) for c in candidates])
        costs = artifact.arrays.get("cost_per_1k")
        per_1k = costs[self.index] if costs is not None else np.zeros(len(candidates))
        self.per_1k = per_1k.astype(np.float32)
        self.penalty = (params.cost_weight * per_1k).astype(np.float32)

    @classmethod
    def check(cls, candidates: tuple[str, ...], params: Any, config: Config) -> list[str]:
        try:
            meta = read_meta(params.artifact)
            if meta.get("algorithm") != cls.algorithm:
                raise ArtifactError(
                    f"'{params.artifact}' holds a '{meta.get('algorithm')}' artifact, "
                    f"not '{cls.algorithm}'"
                )
            fake = Artifact(cls.algorithm, list(meta["models"]), str(meta["encoder"]), {})
            check_fit(fake, candidates, encoder_name(config.embeddings))
        except ArtifactError as exc:
            return [f"artifact: {exc}"]
        return []

    @classmethod
    def build(cls, candidates: tuple[str, ...], params: LearnedParams, ctx: BuildContext) -> Self:
        artifact = load_artifact(params.artifact, cls.algorithm)
        encoder = ctx.resources.encoder
        check_fit(artifact, candidates, encoder.get().name)
        return cls(candidates, ctx.models, params, artifact, encoder)

    @classmethod
    @abstractmethod
    def predictor(cls, artifact: Artifact) -> Predictor:
        """The algorithm's model, built from its artifact once at load."""

    def predict(self, embedding: Vector) -> Vector:
        """Predicted quality of every artifact model (artifact order) for one prompt."""
        return self.model.predict(np.asarray(embedding, dtype=np.float32))

    def predict_batch(self, embeddings: Matrix) -> Matrix:
        """``predict`` for every row of ``embeddings`` at once (offline evaluation)."""
        return self.model.predict_batch(embeddings)

    def rank(self, embedding: Vector, cost_weight: float | None = None) -> tuple[str, ...]:
        """Candidates by predicted quality minus the cost penalty, best first;
        ``cost_weight`` instead of the decision's (a caller's preference)."""
        penalty = self.penalty if cost_weight is None else cost_weight * self.per_1k
        utility = self.predict(embedding)[self.index] - penalty
        return tuple(self.candidates[i] for i in np.argsort(-utility, kind="stable"))

    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        embedding = await self.encoder.get().embed(ctx.text("last_user"))
        asked = ctx.preferences.cost_weight if ctx.preferences is not None else None
        return self.rank(embedding, asked)
