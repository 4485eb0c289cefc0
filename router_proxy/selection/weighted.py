"""``algorithm: weighted``: candidates in a random order drawn by weight (canary splits,
A/B tests). ``params: {weights: {model: w}}``; unlisted candidates weigh 1. The rest of
the order (the fallbacks) is drawn the same way from what is left."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.selection.base import Selector

if TYPE_CHECKING:
    from router_proxy.config.schema import Config, ModelConfig


class WeightedParams(StrictModel):
    weights: dict[str, float] = Field(default_factory=dict)
    seed: int | None = Field(default=None, description="fixed seed (tests, reproducible runs)")


class WeightedSelector(Selector[WeightedParams]):
    config_model = WeightedParams

    def __init__(
        self,
        candidates: tuple[str, ...],
        models: Mapping[str, ModelConfig],
        params: WeightedParams,
    ) -> None:
        super().__init__(candidates, models, params)
        self.weights = [max(self.params.weights.get(c, 1.0), 0.0) for c in candidates]
        self.random = random.Random(self.params.seed)

    @classmethod
    def check(cls, candidates: tuple[str, ...], params: Any, config: Config) -> list[str]:
        problems = [
            f"weights: '{m}' is not a candidate" for m in params.weights if m not in candidates
        ]
        if any(w < 0 for w in params.weights.values()):
            problems.append("weights must not be negative")
        elif candidates and not any(params.weights.get(c, 1.0) > 0 for c in candidates):
            problems.append("weights: at least one candidate needs a positive weight")
        return problems

    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        pool = list(zip(self.candidates, self.weights, strict=True))
        ordered: list[str] = []
        while pool:
            total = sum(w for _, w in pool)
            if total <= 0:  # only zero weights left: keep their YAML order as fallbacks
                ordered.extend(name for name, _ in pool)
                break
            pick = self.random.uniform(0, total)
            for i, (name, weight) in enumerate(pool):
                pick -= weight
                if pick <= 0 or i == len(pool) - 1:
                    ordered.append(name)
                    pool.pop(i)
                    break
        return tuple(ordered)
