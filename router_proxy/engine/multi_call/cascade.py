"""Runs a cascade (selection/cascade.py): stage after stage, each stage's models called
in parallel, until the stop rule answers, the budget is spent, or the last stage is
reached. The last stage is never second-guessed: its first model answers (the stage's
other models are its fallbacks), live when the client streams.

A stage before the last whose calls all failed escalates, as does one none of whose
models can take the prompt (passed over for their context windows: ``fit.py``); when the
last stage fails too, the earliest answer any stage gave is returned rather than an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from router_proxy.engine.multi_call.calls import Call, Caller, whole_body
from router_proxy.engine.multi_call.note import MultiCallNote
from router_proxy.engine.multi_call.rules import Judging, StopRule
from router_proxy.engine.multi_call.stop_agree import AgreeRule
from router_proxy.engine.multi_call.stop_confidence import ConfidenceRule
from router_proxy.engine.multi_call.stop_verifier import VerifierRule
from router_proxy.engine.upstream import Outgoing
from router_proxy.selection.cascade import CascadePlan
from router_proxy.selection.multi_call import BudgetConfig

RULES: Mapping[str, Any] = {
    "agree": AgreeRule,
    "confidence": ConfidenceRule,
    "verifier": VerifierRule,
}


def rule_of(plan: CascadePlan) -> StopRule:
    rule: StopRule = RULES[plan.stop.rule](plan.stop)
    return rule


def spent(budget: BudgetConfig, note: MultiCallNote, started: float) -> bool:
    """Whether the budget leaves no room for another stage."""
    if budget.max_cost_usd is not None and (note.cost() or 0.0) >= budget.max_cost_usd:
        return True
    return budget.max_seconds is not None and time.perf_counter() - started >= budget.max_seconds


async def run_stage(
    caller: Caller, models: tuple[str, ...], out: Outgoing, index: int, note: MultiCallNote
) -> list[Call]:
    """The stage's models in parallel, each falling back within itself: the calls made
    (one passed over is in the note, not judged)."""
    started = time.perf_counter()
    # A task group: the client leaving (or a bug in one call) cancels the stage's others.
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(caller.complete((m,), out, index)) for m in models]
    calls = [task.result() for task in tasks]
    note.calls += calls
    note.stage_seconds.append(time.perf_counter() - started)
    return [c for c in calls if c.called]


async def decide(
    plan: CascadePlan, caller: Caller, out: Outgoing, question: str, note: MultiCallNote
) -> Call | None:
    """Stages before the last, in order: the call that answered, or None when the plan
    reaches its last stage."""
    rule = rule_of(plan)
    asked = whole_body(out, logprobs=rule.logprobs)
    judging = Judging(question, caller, out, note)
    started = time.perf_counter()
    for index, stage in enumerate(plan.stages[:-1]):
        calls = await run_stage(caller, stage, asked, index, note)
        chosen = await rule.judge(calls, judging)
        if chosen is not None:
            return chosen
        if spent(plan.budget, note, started):
            fallback = earliest(note)
            if fallback is not None:
                fallback.reason = "budget-answered"
                return fallback
    return None


def earliest(note: MultiCallNote) -> Call | None:
    """The first answer any call gave (the budget ran out, or the last stage failed)."""
    return next((c for c in note.calls if c.answered), None)


def earlier_answer(note: MultiCallNote) -> Call | None:
    """The last stage gave no answer: the earliest a stage gave, which answers now."""
    earlier = earliest(note)
    if earlier is not None:
        earlier.reason = "answered"
    return earlier


def last_stage(plan: CascadePlan) -> tuple[tuple[str, ...], int]:
    return plan.stages[-1], len(plan.stages) - 1
