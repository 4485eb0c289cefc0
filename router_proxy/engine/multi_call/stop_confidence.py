"""``stop: {rule: confidence, min_mean_logprob: X}``: the stage answers with its first
model (in stage order) whose answer's mean token log-probability is at least X. The
calls ask the upstream for ``logprobs``; an answer that comes without them escalates."""

from __future__ import annotations

from router_proxy.engine.multi_call.calls import Call
from router_proxy.engine.multi_call.rules import Judging, mark_failed
from router_proxy.selection.multi_call import ConfidenceStop


class ConfidenceRule:
    logprobs = True

    def __init__(self, config: ConfidenceStop) -> None:
        self.threshold = config.min_mean_logprob

    async def judge(self, calls: list[Call], judging: Judging) -> Call | None:
        chosen = None
        for call in mark_failed(calls):
            if call.mean_logprob is None:
                call.reason = "no-logprobs"
            elif call.mean_logprob < self.threshold:
                call.reason = "low-confidence"
            elif chosen is None:
                call.reason, chosen = "answered", call
            else:
                call.reason = "confident"
        return chosen
