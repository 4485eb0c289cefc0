"""``stop: {rule: confidence, min_mean_logprob: X}``: the stage answers with its first
model (in stage order) whose answer's mean token log-probability is at least X. The
calls ask the upstream for ``logprobs``.

An answer that comes without them (an Anthropic model never sends any) cannot be judged
so: by default it escalates (``no-logprobs``); with ``without_logprobs: agree``, a stage
none of whose answers is confident but some of which had no logprobs answers when its
models agree, as under ``stop: agree`` (so a one-model stage still escalates)."""

from __future__ import annotations

from router_proxy.answers.extract import CODE_SIMILARITY
from router_proxy.engine.multi_call.calls import Call
from router_proxy.engine.multi_call.rules import Judging, mark_failed
from router_proxy.engine.multi_call.stop_agree import agreement
from router_proxy.selection.multi_call import ConfidenceStop


class ConfidenceRule:
    logprobs = True

    def __init__(self, config: ConfidenceStop) -> None:
        self.threshold = config.min_mean_logprob
        self.agree = config.without_logprobs == "agree"
        self.code_similarity = (
            CODE_SIMILARITY if config.code_similarity is None else config.code_similarity
        )

    async def judge(self, calls: list[Call], judging: Judging) -> Call | None:
        chosen, unsure = None, False
        for call in mark_failed(calls):
            if call.mean_logprob is None:
                call.reason, unsure = "no-logprobs", True
            elif call.mean_logprob < self.threshold:
                call.reason = "low-confidence"
            elif chosen is None:
                call.reason, chosen = "answered", call
            else:
                call.reason = "confident"
        if chosen is None and unsure and self.agree:
            reasons = [c.reason for c in calls]
            chosen = agreement(calls, judging.question, "auto", self.code_similarity)
            if chosen is None:  # what each call said stays: low-confidence, no-logprobs
                for call, reason in zip(calls, reasons, strict=True):
                    call.reason = reason
        return chosen
