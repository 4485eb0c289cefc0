"""The interface of a cascade's stop rule, and the rules by their YAML ``rule:`` name
(one file each: stop_agree.py, stop_confidence.py, stop_verifier.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from router_proxy.engine.multi_call.calls import Call, Caller
from router_proxy.engine.multi_call.note import MultiCallNote
from router_proxy.engine.upstream import Outgoing


@dataclass(frozen=True, slots=True)
class Judging:
    """What a rule may use besides the stage's calls: the question (the last user
    message), and for a rule that asks a model, the caller, the body and the note."""

    question: str
    caller: Caller
    out: Outgoing
    note: MultiCallNote


class StopRule(Protocol):
    # Whether the stage's calls ask the upstream for token log-probabilities.
    logprobs: bool

    async def judge(self, calls: list[Call], judging: Judging) -> Call | None:
        """The call whose answer the stage returns, or None to escalate. Sets each
        call's ``reason``."""
        ...


def mark_failed(calls: list[Call]) -> list[Call]:
    """The calls that answered; the others are marked ``failed``."""
    for call in calls:
        if call.error is not None:
            call.reason = "failed"
        elif call.text is None:
            call.reason = "no-answer"
    return [c for c in calls if c.answered]
