"""Runs an aggregate (selection/aggregate.py): every panel model answers in parallel,
then a vote over their final answers, or a refining model that reads them all and writes
the answer (live, when the client streams); a refiner that fails, or cannot take its
prompt, leaves the answer to the vote."""

from __future__ import annotations

from collections import Counter

from router_proxy.engine.multi_call.calls import Call, Caller, whole_body
from router_proxy.engine.multi_call.cascade import run_stage
from router_proxy.engine.multi_call.note import MultiCallNote
from router_proxy.engine.multi_call.rules import mark_failed
from router_proxy.engine.multi_call.stop_agree import final_answers
from router_proxy.engine.upstream import Outgoing
from router_proxy.selection.aggregate import AggregatePlan


async def run_panel(
    plan: AggregatePlan, caller: Caller, out: Outgoing, note: MultiCallNote
) -> list[Call]:
    """The panel's answers (only tool calls, when no model answered with text); raises
    when none answered at all."""
    panel = await run_stage(caller, plan.panel, whole_body(out), 0, note)
    calls = mark_failed(panel) or [c for c in panel if c.returnable]
    if not calls:
        raise note.failure()
    return calls


def vote(plan: AggregatePlan, calls: list[Call], question: str) -> Call:
    """The earliest call backing the most common final answer (answers that could not
    be read back nothing); no answer readable: the first call."""
    answers = final_answers([c.text or "" for c in calls], question, plan.format)
    counts = Counter(a for a in answers if a is not None)
    chosen = calls[0]
    if counts:
        top = max(counts.values())
        winner = next(a for a in answers if a is not None and counts[a] == top)
        chosen = calls[answers.index(winner)]
        for call, answer in zip(calls, answers, strict=True):
            call.reason = "voted" if answer == winner else "outvoted"
    else:
        for call in calls:
            call.reason = "no-answer"
    chosen.reason = "answered"
    return chosen


def refining(plan: AggregatePlan, calls: list[Call], question: str) -> str:
    """The refiner's prompt: the question and every answer (unnamed, in panel order)."""
    assert plan.refiner is not None
    candidates = "\n\n".join(f"Answer {i}:\n{call.text}" for i, call in enumerate(calls, start=1))
    for call in calls:
        call.reason = "candidate"
    prompt = plan.refiner.prompt.replace("{question}", question)
    return prompt.replace("{candidates}", candidates)
