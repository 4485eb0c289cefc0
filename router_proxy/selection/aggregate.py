"""``algorithm: aggregate``: every model answers in parallel, then one answer is made of
theirs (engine/multi_call/ runs it):

- ``combine: vote``: the most common final answer (router_proxy/answers/extract.py);
  the earliest listed model backing it answers; a tie goes to the earliest model.
- ``combine: refine``: a refining model reads the question and every answer and writes
  the final one (TCAndon-Router's refining agent); its prompt is configurable.

    route:
      algorithm: aggregate
      params:
        models: [model-a, model-b, model-c]
        combine: refine
        refiner: {model: big-model, prompt: "... {question} ... {candidates} ..."}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.selection.multi_call import (
    AnswerFormat,
    MultiCallPlan,
    MultiCallSelector,
    ParamProblem,
    RefinerConfig,
    repeated,
)


class AggregateParams(StrictModel):
    models: list[str] = Field(min_length=2, description="models that all answer, in parallel")
    combine: Literal["vote", "refine"] = "vote"
    format: AnswerFormat = Field(default="auto", description="how votes compare answers")
    refiner: RefinerConfig | None = Field(default=None, description="combine: refine")

    @model_validator(mode="after")
    def _refiner_when_refining(self) -> Self:
        if self.combine == "refine" and self.refiner is None:
            raise ValueError("combine: refine needs a refiner: {model: ...}")
        if self.combine == "vote" and self.refiner is not None:
            raise ValueError("a refiner is used only with combine: refine")
        return self


@dataclass(frozen=True, slots=True)
class AggregatePlan(MultiCallPlan):
    panel: tuple[str, ...]  # the models that all answer
    format: AnswerFormat
    refiner: RefinerConfig | None  # None: vote
    models: tuple[str, ...]
    kind = "aggregate"

    @property
    def always_called(self) -> tuple[str, ...]:
        return self.panel + ((self.refiner.model,) if self.refiner is not None else ())


class AggregateSelector(MultiCallSelector):
    config_model = AggregateParams

    def __init__(self, candidates: tuple[str, ...], models: Any, params: AggregateParams) -> None:
        super().__init__(candidates, models, params)
        self._plan = AggregatePlan(tuple(params.models), params.format, params.refiner, candidates)

    @classmethod
    def models_named(cls, params: AggregateParams) -> list[tuple[str, tuple[str | int, ...]]]:
        named: list[tuple[str, tuple[str | int, ...]]] = [
            (model, ("models", j)) for j, model in enumerate(params.models)
        ]
        if params.refiner is not None:
            named.append((params.refiner.model, ("refiner", "model")))
        return named

    @classmethod
    def problems(cls, params: AggregateParams) -> list[ParamProblem]:
        return repeated(params.models, ("models",))

    async def plan(self, ctx: RequestContext) -> MultiCallPlan:
        return self._plan
