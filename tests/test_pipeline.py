"""Decisions and the pipeline: priority, file order, first match, short-circuit, names."""

from __future__ import annotations

import asyncio

import pytest

from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.errors import NotFoundError
from router_proxy.pipeline import Pipeline, RoutePlan

POLICY = """\
providers:
  mock: {type: mock}
models:
  small: {provider: mock}
  coder: {provider: mock}
  large: {provider: mock}
  local: {provider: mock}
signals:
  - {name: code, type: keyword, any: [python, rust]}
  - {name: long, type: keyword, any: [essay]}
  - {name: private, type: keyword, any: [password, ssn]}
  - {name: urgent, type: keyword, any: [urgent]}
decisions:
  - name: coding
    priority: 50
    when: {all: [code, {not: long}]}
    route: {candidates: [coder, large]}
  - name: first-tie
    priority: 10
    when: {any: [urgent, long]}
    route: {candidates: [large]}
  - name: second-tie
    priority: 10
    when: urgent
    route: {candidates: [small]}
  - name: privacy
    priority: 100
    when: private
    route: {candidates: [local]}
  - name: named-only
    when: false
    route: {candidates: [large, small]}
  - name: default
    when: true
    route: {candidates: [small, coder]}
"""


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    config, _ = load_config_text(POLICY, env={})
    return Pipeline.build(config)


def route(pipeline: Pipeline, prompt: str, model: str = "auto") -> RoutePlan:
    ctx = RequestContext.from_prompt(prompt)
    ctx.request.model = model
    return asyncio.run(pipeline.route(ctx))


def test_priority_then_first_match(pipeline: Pipeline) -> None:
    plan = route(pipeline, "my python password leaked")
    assert (plan.decision, plan.model) == ("privacy", "local")  # 100 beats coding's 50
    plan = route(pipeline, "python help")
    assert (plan.decision, plan.model, plan.candidates) == ("coding", "coder", ("coder", "large"))


def test_equal_priority_keeps_file_order(pipeline: Pipeline) -> None:
    assert route(pipeline, "urgent!").decision == "first-tie"


def test_not_and_fallthrough_to_default(pipeline: Pipeline) -> None:
    plan = route(pipeline, "a python essay")  # code but long: coding fails, ties match long
    assert plan.decision == "first-tie"
    plan = route(pipeline, "what's the weather")
    assert (plan.decision, plan.model, plan.rule, plan.via) == ("default", "small", "true", "auto")


def test_signals_are_evaluated_lazily_and_explained(pipeline: Pipeline) -> None:
    plan = route(pipeline, "python help")
    # privacy (priority 100) reads `private`; coding reads `code` then `long`; nothing more.
    assert set(plan.signals) == {"private", "code", "long"}
    assert plan.signals["code"].fired
    assert plan.signals["code"].detail == "matched 'python'"
    # `all` stops at its first false child and `any` at its first true one: for "urgent!"
    # coding stops at code=false and first-tie at urgent=true, so `long` never runs.
    plan = route(pipeline, "urgent!")
    assert plan.decision == "first-tie"
    assert set(plan.signals) == {"private", "code", "urgent"}


def test_short_circuit_skips_later_signals() -> None:
    config, _ = load_config_text(
        POLICY.replace("when: {any: [urgent, long]}", "when: {any: [code, long]}"), env={}
    )
    pipeline = Pipeline.build(config)
    plan = route(pipeline, "rust essay")  # coding: code fires, long fires -> not long fails
    assert plan.decision == "first-tie"
    plan = route(pipeline, "plain rust")  # coding matches at once; tie decisions never run
    assert plan.decision == "coding"
    assert "urgent" not in plan.signals


def test_request_may_name_a_decision_or_a_model(pipeline: Pipeline) -> None:
    plan = route(pipeline, "python", model="named-only")
    assert (plan.decision, plan.model, plan.via) == ("named-only", "large", "decision")
    plan = route(pipeline, "python", model="large")
    assert (plan.decision, plan.model, plan.via, plan.signals) == ("direct", "large", "model", {})


def test_unknown_model_is_not_found(pipeline: Pipeline) -> None:
    with pytest.raises(NotFoundError) as info:
        route(pipeline, "x", model="gpt5")
    assert info.value.status_code == 404
    assert info.value.param == "model"


def test_plan_serialises_for_explain(pipeline: Pipeline) -> None:
    data = route(pipeline, "python help").to_dict()
    assert data["decision"] == "coding"
    assert data["model"] == "coder"
    assert data["rule"] == "all(code, not(long))"
    assert data["signals"]["code"] == {"fired": True, "value": True, "detail": "matched 'python'"}
    assert data["routing_ms"] >= 0


def test_explanation_shows_each_predicate_and_why_earlier_decisions_failed(
    pipeline: Pipeline,
) -> None:
    plan = route(pipeline, "a python essay")
    assert plan.decision == "first-tie"
    # `any` stops at the first true child; `urgent` was never needed.
    assert plan.explanation == "any(urgent [False] ✗, long [True] ✓)"
    assert plan.rejected() == {
        "privacy": "private [False] ✗",
        "coding": "all(code [True] ✓, not(long [True] ✓))",
    }
    plan = route(pipeline, "hello", model="named-only")
    assert plan.explanation == "false"
    assert plan.rejected() == {}
    data = route(pipeline, "hello").to_dict()
    assert data["explanation"] == "true"
    assert set(data["rejected"]) == {"privacy", "coding", "first-tie", "second-tie", "named-only"}
