"""``stop: {rule: verifier, model: M, prompt: ...}``: model M reads the question and a
stage's answer and says yes or no; the first answer (in stage order) it accepts is
returned. Each verification is a call of its own, priced and shown in ``x-router-calls``
(``M:verified-yes`` / ``M:verified-no``; ``M:context`` when no verifier can take the
prompt, and the answer goes unverified). The prompt's ``{question}`` and ``{answer}``
are filled in by plain replacement."""

from __future__ import annotations

import re
import time

from router_proxy.engine.multi_call.calls import VERDICT, Call, asking
from router_proxy.engine.multi_call.rules import Judging, mark_failed
from router_proxy.selection.multi_call import VerifierStop

_YES = re.compile(r"^\W*(yes|correct|true)\b", re.IGNORECASE)


def accepted(reply: str | None) -> bool:
    """A verifier's reply starts with yes (or correct, true)."""
    return reply is not None and _YES.match(reply) is not None


class VerifierRule:
    logprobs = False

    def __init__(self, config: VerifierStop) -> None:
        self.model = config.model
        self.prompt = config.prompt

    async def judge(self, calls: list[Call], judging: Judging) -> Call | None:
        for call in mark_failed(calls):
            started = time.perf_counter()
            prompt = self.prompt.replace("{question}", judging.question).replace(
                "{answer}", call.text or ""
            )
            stage = call.stage
            verdict = await judging.caller.complete(
                (self.model,), asking(judging.out, prompt), stage, prompt=prompt
            )
            verdict.role = VERDICT
            judging.note.calls.append(verdict)
            judging.note.stage_seconds[stage] += time.perf_counter() - started
            if accepted(verdict.text):
                verdict.reason, call.reason = "verified-yes", "answered"
                return call
            if verdict.called:  # else ``context``: no verifier could read it
                verdict.reason = "failed" if verdict.error is not None else "verified-no"
            call.reason = "rejected"
        return None
