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

Or the stages come per prompt from a trained artifact (``router-proxy train --algorithm
cascade``; ``selection/cascade_artifact.py``): the prompt's embedding picks its kind,
and ``budget_per_1k`` (US$ per 1,000 requests, the trade-off the trainer swept) the
stage set for that kind:

    route:
      algorithm: cascade
      params: {artifact: artifacts/cascade, budget_per_1k: 2.5}

The knob is planned on the training rows; ``hold_budget: true`` (or ``{window: 500,
min_requests: 100, max_correction: 4}``) has the gateway steer the knob it asks the
artifact with so that the decision's live traffic spends ``budget_per_1k``
(``selection/budget_hold.py``; the engine's accounting tells the hold what each request
cost).

Every model the artifact's plans call must be a configured model; the artifact is
checked at load like the other learned selectors' (its encoder, its models).

A confidence rule needs log-probabilities: a stage before the last (inline, or in one of
the artifact's plans) with a model whose provider type never returns them (anthropic,
mock) is refused at load unless ``stop.without_logprobs`` says what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self

import numpy as np
from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.embeddings.registry import encoder_name
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.providers.registry import PROVIDER_TYPES
from router_proxy.selection.artifact import META, ArtifactError
from router_proxy.selection.base import Selector
from router_proxy.selection.budget_hold import BudgetHold, HoldBudgetConfig
from router_proxy.selection.cascade_artifact import CascadeArtifact, Stages
from router_proxy.selection.multi_call import (
    AgreeStop,
    BudgetConfig,
    ConfidenceStop,
    MultiCallPlan,
    MultiCallSelector,
    ParamProblem,
    Stage,
    StopConfig,
    StopRule,
    VerifierStop,
    repeated,
)

if TYPE_CHECKING:
    from router_proxy.config.schema import Config
    from router_proxy.resources import BuildContext


def _hold_flag(value: Any) -> Any:
    """``hold_budget: true`` is the defaults; ``false`` is no hold."""
    if value is True:
        return {}
    return None if value is False else value


HoldSetting = Annotated[
    HoldBudgetConfig | None,
    BeforeValidator(_hold_flag, json_schema_input_type=bool | HoldBudgetConfig),
]


class CascadeParams(StrictModel):
    stages: list[Annotated[list[str], Field(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        description="stages of model names, cheapest first; one stage's "
        "models are called in parallel",
    )
    artifact: Path | None = Field(
        default=None,
        description="a trained cascade (`router-proxy train --algorithm cascade`) that "
        "picks the stages per prompt, instead of `stages`",
    )
    budget_per_1k: float | None = Field(
        default=None,
        ge=0,
        description="with `artifact`: the US$ per 1,000 requests its stage sets may cost",
    )
    hold_budget: HoldSetting = Field(
        default=None,
        description="with `artifact`: steer the knob the artifact is asked with so that "
        "the decision's live traffic spends `budget_per_1k` per 1,000 requests (each "
        "replica on its share); `true` or {window, min_requests, max_correction}",
    )
    stop: StopConfig = Field(default_factory=AgreeStop, description="when a stage answers")
    budget: BudgetConfig = Field(
        default_factory=BudgetConfig, description="stop escalating once this is spent"
    )

    @field_validator("hold_budget")
    @classmethod
    def _hold_needs_a_budget(
        cls, value: HoldBudgetConfig | None, info: ValidationInfo
    ) -> HoldBudgetConfig | None:
        if value is not None and (
            not info.data.get("artifact") or not info.data.get("budget_per_1k")
        ):
            raise ValueError(
                "`hold_budget` holds a trained cascade's `budget_per_1k`: it needs "
                "`artifact` and a `budget_per_1k` above 0"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CascadeParams:
        if (self.stages is None) == (self.artifact is None):
            raise ValueError("give either `stages` or `artifact` (with `budget_per_1k`)")
        if self.artifact is not None and self.budget_per_1k is None:
            raise ValueError("`artifact` needs `budget_per_1k`")
        return self


@dataclass(frozen=True, slots=True)
class CascadePlan(MultiCallPlan):
    stages: tuple[Stage, ...]
    stop: StopRule
    budget: BudgetConfig
    models: tuple[str, ...]
    # A trained cascade's: the knob the artifact was asked with (the hold's, when held).
    budget_per_1k: float | None = None
    hold: BudgetHold | None = field(default=None, compare=False)
    kind = "cascade"

    @property
    def always_called(self) -> tuple[str, ...]:
        return self.stages[0]  # later stages only when the stop rule escalates


class CascadeSelector(MultiCallSelector):
    config_model = CascadeParams

    def __init__(
        self,
        candidates: tuple[str, ...],
        models: Any,
        params: CascadeParams,
        learned: tuple[CascadeArtifact, SharedEncoder] | None = None,
    ) -> None:
        super().__init__(candidates, models, params)
        self.learned = learned
        # None: the knob is used as written, and nobody is told what requests cost.
        self.hold: BudgetHold | None = None
        hold, budget = params.hold_budget, params.budget_per_1k
        if hold is not None and learned is not None and budget is not None:
            self.hold = BudgetHold(budget, hold)
        self._plans: dict[Stages, CascadePlan] = {}  # one plan object per stage set
        self._plan = self._plan_of(tuple(tuple(s) for s in params.stages or ()))

    @classmethod
    def models_named(cls, params: CascadeParams) -> list[tuple[str, tuple[str | int, ...]]]:
        named: list[tuple[str, tuple[str | int, ...]]] = [
            (model, ("stages", i, j))
            for i, stage in enumerate(params.stages or ())
            for j, model in enumerate(stage)
        ]
        if params.artifact is not None:
            named += [(model, ("artifact",)) for model in _artifact_models(params.artifact)]
        if isinstance(params.stop, VerifierStop):
            named.append((params.stop.model, ("stop", "model")))
        return named

    @classmethod
    def problems(cls, params: CascadeParams) -> list[ParamProblem]:
        found: list[ParamProblem] = []
        for i, stage in enumerate(params.stages or ()):
            found += repeated(stage, ("stages", i))
        return found

    @classmethod
    def check(cls, candidates: tuple[str, ...], params: Any, config: Config) -> list[str]:
        problems = _without_logprobs(params, config)
        if params.artifact is None:
            return problems
        try:
            _load(params.artifact).check_fit(encoder_name(config.embeddings), candidates)
        except ArtifactError as exc:
            return [*problems, f"artifact: {exc}"]
        return problems

    @classmethod
    def build(cls, candidates: tuple[str, ...], params: CascadeParams, ctx: BuildContext) -> Self:
        if params.artifact is None:
            return cls(candidates, ctx.models, params)
        encoder = ctx.resources.encoder
        artifact = CascadeArtifact.load(
            params.artifact, encoder=encoder.get().name, candidates=candidates
        )
        return cls(candidates, ctx.models, params, (artifact, encoder))

    def _plan_of(self, stages: Stages) -> CascadePlan:
        plan = self._plans.get(stages)
        if plan is None:
            models = tuple(dict.fromkeys(m for stage in stages for m in stage))
            knob = self.params.budget_per_1k if self.learned is not None else None
            plan = CascadePlan(stages, self._stop(), self.params.budget, models, knob, self.hold)
            self._plans[stages] = plan
        return plan

    def _stop(self) -> StopRule:
        """The configured stop rule; where it compares answers (``agree``, and
        ``confidence`` falling back to agreement) with an artifact, code answers agree at
        the artifact's similarity unless the config names one."""
        stop: StopRule = self.params.stop
        if self.learned is None or not isinstance(stop, AgreeStop | ConfidenceStop):
            return stop
        if stop.code_similarity is not None:
            return stop
        return stop.model_copy(update={"code_similarity": self.learned[0].code_similarity})

    async def stages_for(self, ctx: RequestContext) -> CascadePlan:
        """This request's stages: the inline ones, or the artifact's for its prompt."""
        if self.learned is None:
            return self._plan
        artifact, encoder = self.learned
        embedding = await encoder.get().embed(ctx.text("last_user"))
        vector = np.asarray(embedding, dtype=np.float32)
        if self.hold is not None:
            knob = self.hold.knob  # read after the await: the latest correction
            return replace(self._plan_of(artifact.stages(vector, knob)), budget_per_1k=knob)
        budget = self.params.budget_per_1k
        assert budget is not None  # the params model requires it with an artifact
        return self._plan_of(artifact.stages(vector, budget))

    def carry_from(self, previous: Selector[Any]) -> None:
        """A reload that leaves this decision's params and its artifact's plans as they
        were keeps the budget hold's state; any change starts it afresh."""
        if (
            self.hold is None
            or not isinstance(previous, CascadeSelector)
            or previous.hold is None
            or previous.params != self.params  # the budget and the hold's settings too
            or self.learned is None
            or previous.learned is None
            or not self.learned[0].same_plans(previous.learned[0])
        ):
            return
        self.hold.adopt(previous.hold)

    async def plan(self, ctx: RequestContext) -> MultiCallPlan:
        return await self.stages_for(ctx)


def _without_logprobs(params: CascadeParams, config: Config) -> list[str]:
    """A confidence rule whose earlier stages call a model that can never say how sure it
    is (its provider type sends no logprobs) must say what to do about it: left to the
    default, every such answer would escalate, and the cascade would pay for every stage."""
    stop = params.stop
    if not isinstance(stop, ConfidenceStop) or "without_logprobs" in stop.model_fields_set:
        return []
    problems: list[str] = []
    seen: set[str] = set()
    for model, where in _early_models(params):
        configured = config.models.get(model)
        if model in seen or configured is None:  # an unknown name is reported where named
            continue
        seen.add(model)
        provider = config.providers.get(configured.provider)
        if provider is None or PROVIDER_TYPES[provider.type].logprobs:
            continue
        problems.append(
            f"stop: model '{model}' ({where}) is served by provider '{configured.provider}' "
            f"(type {provider.type}), which never returns logprobs, so the confidence rule "
            "would escalate every answer it gives; write `without_logprobs: escalate` to "
            "accept that, or `without_logprobs: agree` to judge its stage by agreement"
        )
    return problems


def _early_models(params: CascadeParams) -> list[tuple[str, str]]:
    """Each model of a stage before the last, with where it is named."""
    stages = params.stages or []
    named = [
        (model, f"stages[{i}][{j}]")
        for i, stage in enumerate(stages[:-1])
        for j, model in enumerate(stage)
    ]
    if params.artifact is not None:
        try:
            plans = _load(params.artifact).plans
        except ArtifactError:
            plans = ()  # check() says why
        named += [(m, "artifact") for plan in plans for stage in plan[:-1] for m in stage]
    return named


def _artifact_models(directory: Path) -> list[str]:
    """The models the artifact's plans call (none when it cannot be read: ``check``
    then says why)."""
    try:
        artifact = _load(directory)
    except ArtifactError:
        return []
    return list(dict.fromkeys(m for plan in artifact.plans for stage in plan for m in stage))


def _load(directory: Path) -> CascadeArtifact:
    """The artifact, read once per version of its files while a config is checked."""
    try:
        stamp = (directory / META).stat().st_mtime_ns
    except OSError:
        stamp = 0  # load() says what is missing
    return _load_cached(str(directory), stamp)


@lru_cache(maxsize=8)
def _load_cached(directory: str, stamp: int) -> CascadeArtifact:
    return CascadeArtifact.load(directory)
