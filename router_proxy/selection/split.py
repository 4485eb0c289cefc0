"""``algorithm: split``: each request goes to one of several selectors ("arms"), drawn by
weight, and that arm orders the candidates. A canary of a retrained artifact
(``router-proxy promote --canary 0.1 --write``):

    route:
      candidates: [a, b, c]
      algorithm: split
      params:
        arms:
          - {weight: 0.9, algorithm: cascal, params: {artifact: artifacts/serving}}
          - {weight: 0.1, algorithm: cascal, params: {artifact: artifacts/candidate}}

Where ``weighted`` draws among models, ``split`` draws among selectors; each arm sees the
decision's candidates, and its params are checked as its own algorithm checks them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

from pydantic import Field, ValidationError

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.selection.base import Selector

if TYPE_CHECKING:
    from router_proxy.config.schema import Config, ModelConfig
    from router_proxy.resources import BuildContext


class Arm(StrictModel):
    weight: float = Field(ge=0, description="share of requests, relative to the others'")
    algorithm: str = Field(description="the arm's selection algorithm (not split)")
    params: dict[str, Any] = Field(default_factory=dict, description="the algorithm's params")


class SplitParams(StrictModel):
    arms: list[Arm] = Field(min_length=1)
    seed: int | None = Field(default=None, description="fixed seed (tests, reproducible runs)")


def _arm_class(arm: Arm) -> type[Selector[Any]]:
    from router_proxy.selection.registry import SELECTORS  # the registry lists split too

    cls = SELECTORS.get(arm.algorithm)
    if cls is None or cls is SplitSelector:
        raise ValueError(f"unknown or nested algorithm '{arm.algorithm}'")
    return cls


class SplitSelector(Selector[SplitParams]):
    config_model = SplitParams

    def __init__(
        self,
        candidates: tuple[str, ...],
        models: Mapping[str, ModelConfig],
        params: SplitParams,
        arms: list[Selector[Any]] | None = None,
    ) -> None:
        super().__init__(candidates, models, params)
        self.arms = arms or []
        self.weights = [arm.weight for arm in params.arms]
        self.random = random.Random(params.seed)
        self.drawn = [0] * len(self.arms)  # requests per arm (tests, logs)

    @classmethod
    def check(cls, candidates: tuple[str, ...], params: Any, config: Config) -> list[str]:
        problems: list[str] = []
        if not any(arm.weight > 0 for arm in params.arms):
            problems.append("arms: at least one arm needs a positive weight")
        for i, arm in enumerate(params.arms):
            try:
                arm_cls = _arm_class(arm)
                arm_params = arm_cls.config_model.model_validate(arm.params)
            except (ValueError, ValidationError) as exc:
                problems.append(f"arms.{i}: {exc}")
                continue
            problems += [
                f"arms.{i}.params: {p}" for p in arm_cls.check(candidates, arm_params, config)
            ]
        return problems

    @classmethod
    def build(cls, candidates: tuple[str, ...], params: SplitParams, ctx: BuildContext) -> Self:
        arms = []
        for arm in params.arms:
            arm_cls = _arm_class(arm)
            arm_params = arm_cls.config_model.model_validate(arm.params)
            arms.append(arm_cls.build(candidates, arm_params, ctx))
        return cls(candidates, ctx.models, params, arms)

    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        (index,) = self.random.choices(range(len(self.arms)), weights=self.weights)
        self.drawn[index] += 1
        return await self.arms[index].order(ctx)
