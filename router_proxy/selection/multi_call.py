"""Selectors that plan several calls instead of ordering candidates (``cascade``,
``aggregate``): the plan's shape, shared by the selectors that make it and the engine
that runs it (``engine/multi_call/``).

A multi-call selector names its models in its params (no ``candidates`` needed); its
``plan(ctx)`` runs per request, so a learned planner can choose stages by the prompt.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.selection.base import Selector
from router_proxy.selection.budget_hold import BudgetHold

# The format answers are compared in (router_proxy/answers/extract.py); auto: detected
# from the prompt and the answers (``detect_format``).
AnswerFormat = Literal["auto", "choice", "number", "code", "text"]
# A path under ``route.params`` and what is wrong there.
ParamProblem = tuple[tuple[str | int, ...], str]

DEFAULT_VERIFIER_PROMPT = (
    "Question:\n{question}\n\nProposed answer:\n{answer}\n\n"
    "Is the proposed answer correct? Reply with only one word: yes or no."
)
DEFAULT_REFINER_PROMPT = (
    "Several assistants answered the question below. Read their answers, decide which "
    "is right (or correct them all), and write one final answer in the form the question "
    "asks for.\n\nQuestion:\n{question}\n\n{candidates}\n\nFinal answer:"
)


def _template(value: str, *fields: str) -> str:
    """A prompt template must contain each ``{field}`` (filled by plain replacement, so
    other braces in it are left alone)."""
    missing = [f for f in fields if "{" + f + "}" not in value]
    if missing:
        raise ValueError("the prompt must contain " + ", ".join("{" + f + "}" for f in missing))
    return value


# How alike two programs must be to agree (answers/extract.py group_code).
CodeSimilarity = Annotated[
    float | None,
    Field(
        gt=0,
        le=1,
        description="Jaccard similarity of token 3-grams at which two code answers agree; "
        "default: a trained artifact's, else 0.2",
    ),
]


class AgreeStop(StrictModel):
    """Answer when every model of the stage gave the same final answer."""

    rule: Literal["agree"] = "agree"
    format: AnswerFormat = "auto"
    code_similarity: CodeSimilarity = None


class ConfidenceStop(StrictModel):
    """Answer when a model's mean token log-probability reaches ``min_mean_logprob``
    (the upstream is asked for ``logprobs``). An answer without them (Anthropic's never
    have any) escalates, or, with ``without_logprobs: agree``, its stage is judged by
    agreement instead. A stage before the last with a model whose provider can never
    send them is refused at load unless ``without_logprobs`` is written out."""

    rule: Literal["confidence"]
    min_mean_logprob: float = Field(default=-0.3, le=0)
    without_logprobs: Literal["escalate", "agree"] = Field(
        default="escalate",
        description="an answer that comes without logprobs: escalate, or agree (its stage "
        "answers when every model of it gives the same final answer)",
    )
    code_similarity: CodeSimilarity = None  # for without_logprobs: agree


class VerifierStop(StrictModel):
    """Answer when the verifier model says yes about a stage's answer."""

    rule: Literal["verifier"]
    model: str = Field(min_length=1)
    prompt: str = DEFAULT_VERIFIER_PROMPT

    @field_validator("prompt")
    @classmethod
    def _has_fields(cls, value: str) -> str:
        return _template(value, "question", "answer")


def _rule_by_name(value: Any) -> Any:
    return {"rule": value} if isinstance(value, str) else value


StopRule = AgreeStop | ConfidenceStop | VerifierStop
StopConfig = Annotated[
    StopRule,
    BeforeValidator(_rule_by_name),
    Field(discriminator="rule"),
]


class BudgetConfig(StrictModel):
    """Stop escalating once this much has been spent on the request (the answer so far
    is returned)."""

    max_cost_usd: float | None = Field(default=None, gt=0)
    max_seconds: float | None = Field(default=None, gt=0)


class RefinerConfig(StrictModel):
    model: str = Field(min_length=1)
    prompt: str = DEFAULT_REFINER_PROMPT

    @field_validator("prompt")
    @classmethod
    def _has_fields(cls, value: str) -> str:
        return _template(value, "question", "candidates")


Stage = tuple[str, ...]


class MultiCallPlan:
    """What the engine runs for one request. ``models``: every model it may call, in the
    order they would be called (the decision's candidates). ``hold``: a live budget hold
    the engine's accounting tells what each request the plan ran cost, and
    ``budget_per_1k`` the knob the plan was chosen at (a trained cascade's; None else)."""

    kind: ClassVar[str]
    models: tuple[str, ...]
    budget_per_1k: float | None = None
    hold: BudgetHold | None = None

    @property
    def always_called(self) -> tuple[str, ...]:
        """The models every request of the plan calls whatever the answers (a cascade's
        first stage, an aggregate's panel and refiner): what a cost estimate made without
        calling anyone can count on."""
        return self.models


class MultiCallSelector(Selector[Any]):
    """A selector whose decision calls several models. ``order`` (used where one model
    is wanted, e.g. a text completion) returns the plan's models."""

    @classmethod
    @abstractmethod
    def models_named(cls, params: Any) -> list[tuple[str, tuple[str | int, ...]]]:
        """Each model the params name, with its path under ``route.params``."""

    @classmethod
    def problems(cls, params: Any) -> list[ParamProblem]:
        """Shape problems the params model cannot see (a model twice in one stage)."""
        return []

    @classmethod
    def candidates_of(cls, params: Any) -> tuple[str, ...]:
        """The decision's candidates: every model named, once, in order."""
        return tuple(dict.fromkeys(model for model, _ in cls.models_named(params)))

    @abstractmethod
    async def plan(self, ctx: RequestContext) -> MultiCallPlan:
        """The calls for this request."""

    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        return self.candidates


def repeated(models: Iterable[str], at: tuple[str | int, ...]) -> list[ParamProblem]:
    """A model listed twice where each must be distinct."""
    seen: set[str] = set()
    problems: list[ParamProblem] = []
    for j, model in enumerate(models):
        if model in seen:
            problems.append(((*at, j), f"model '{model}' is listed twice"))
        seen.add(model)
    return problems


def describe_plan(plan: MultiCallPlan) -> dict[str, Any]:
    """The plan as JSON (``POST /v1/route``, ``router-proxy explain``)."""
    shown: dict[str, Any] = {"kind": plan.kind}
    if is_dataclass(plan):
        for item in fields(plan):
            value = getattr(plan, item.name)
            if isinstance(value, StrictModel):
                value = value.model_dump(mode="json")
            elif isinstance(value, BudgetHold):
                value = value.describe()
            shown[item.name] = value
    return shown
