"""``algorithm: cascade``: stages of models called in parallel, cheapest first; after
each stage a stop rule answers or escalates to the next stage (engine/multi_call/ runs
it).

    route:
      algorithm: cascade
      params:
        stages: [[cheap-a, cheap-b], [expensive]]
        stop: agree                     # or {rule: confidence, min_mean_logprob: -0.3}
                                        # or {rule: verifier, model: judge, prompt: ...}
        budget: {max_cost_usd: 0.01, max_seconds: 20}

The last stage is never second-guessed: its first model answers (the others in it are
that model's fallbacks). A one-model stage before the last can stop only under the
confidence or verifier rule (under ``agree`` it has nobody to agree with).

The stages are inline here. A trained artifact choosing them per prompt
(``selection/cascade_artifact.py``, ``params: {artifact: DIR, budget_per_1k: X}``) plugs
in as another source of stages: ``CascadeParams`` takes ``artifact`` and
``budget_per_1k`` beside an optional ``stages`` (exactly one of the two), ``check``
loads the artifact's metadata (its models, its encoder), ``models_named`` names the
artifact's models (path ``("artifact",)``), ``build`` gets the shared encoder from the
BuildContext, and ``plan`` embeds ``ctx.text("last_user")`` and asks
``artifact.stages(embedding, budget_per_1k)``. The engine runs whatever plan it gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.selection.multi_call import (
    AgreeStop,
    BudgetConfig,
    MultiCallPlan,
    MultiCallSelector,
    ParamProblem,
    Stage,
    StopConfig,
    StopRule,
    VerifierStop,
    repeated,
)


class CascadeParams(StrictModel):
    stages: list[Annotated[list[str], Field(min_length=1)]] = Field(
        min_length=1,
        description="stages of model names, cheapest first; one stage's "
        "models are called in parallel",
    )
    stop: StopConfig = Field(default_factory=AgreeStop, description="when a stage answers")
    budget: BudgetConfig = Field(
        default_factory=BudgetConfig, description="stop escalating once this is spent"
    )


@dataclass(frozen=True, slots=True)
class CascadePlan(MultiCallPlan):
    stages: tuple[Stage, ...]
    stop: StopRule
    budget: BudgetConfig
    models: tuple[str, ...]
    kind = "cascade"


class CascadeSelector(MultiCallSelector):
    config_model = CascadeParams

    def __init__(self, candidates: tuple[str, ...], models: Any, params: CascadeParams) -> None:
        super().__init__(candidates, models, params)
        stages = tuple(tuple(stage) for stage in params.stages)
        self._plan = CascadePlan(stages, params.stop, params.budget, candidates)

    @classmethod
    def models_named(cls, params: CascadeParams) -> list[tuple[str, tuple[str | int, ...]]]:
        named: list[tuple[str, tuple[str | int, ...]]] = [
            (model, ("stages", i, j))
            for i, stage in enumerate(params.stages)
            for j, model in enumerate(stage)
        ]
        if isinstance(params.stop, VerifierStop):
            named.append((params.stop.model, ("stop", "model")))
        return named

    @classmethod
    def problems(cls, params: CascadeParams) -> list[ParamProblem]:
        found: list[ParamProblem] = []
        for i, stage in enumerate(params.stages):
            found += repeated(stage, ("stages", i))
        return found

    def stages_for(self, ctx: RequestContext) -> CascadePlan:
        """This request's stages: the same for every request with inline stages."""
        return self._plan

    async def plan(self, ctx: RequestContext) -> MultiCallPlan:
        return self.stages_for(ctx)
