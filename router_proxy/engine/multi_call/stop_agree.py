"""``stop: agree``: the stage answers when all its models give the same final answer
(router_proxy/answers/extract.py: option letter, number, canonical code, normalised
text; the gateway compares code, never runs it). The stage's first model answers. Code
answers agree at ``code_similarity`` (a trained artifact's, set by selection/cascade.py,
else ``CODE_SIMILARITY``)."""

from __future__ import annotations

from router_proxy.answers.extract import CODE_SIMILARITY, detect_format, extract, group_code
from router_proxy.engine.multi_call.calls import Call
from router_proxy.engine.multi_call.rules import Judging, mark_failed
from router_proxy.selection.multi_call import AgreeStop, AnswerFormat


def final_answers(
    texts: list[str], question: str, fmt: AnswerFormat, code_similarity: float = CODE_SIMILARITY
) -> list[str | None]:
    """Each text's final answer, comparable with ``==`` (code grouped by similarity)."""
    found = detect_format(question, texts) if fmt == "auto" else fmt
    answers = [extract(text, found, question) for text in texts]
    return group_code(answers, code_similarity) if found == "code" else answers


def agreement(
    calls: list[Call], question: str, fmt: AnswerFormat, code_similarity: float = CODE_SIMILARITY
) -> Call | None:
    """The stage's first call when every call, more than one, answered the same final
    answer (the others are marked ``agreed``); else None. Reasons of calls that did not
    answer are set by ``mark_failed``."""
    answered = mark_failed(calls)
    if len(calls) < 2 or len(answered) < len(calls):
        return None
    answers = final_answers([c.text or "" for c in calls], question, fmt, code_similarity)
    if answers[0] is None or any(a != answers[0] for a in answers):
        return None
    for call in calls[1:]:
        call.reason = "agreed"
    calls[0].reason = "answered"
    return calls[0]


class AgreeRule:
    logprobs = False

    def __init__(self, config: AgreeStop) -> None:
        self.format: AnswerFormat = config.format
        self.code_similarity = (
            CODE_SIMILARITY if config.code_similarity is None else config.code_similarity
        )

    async def judge(self, calls: list[Call], judging: Judging) -> Call | None:
        chosen = agreement(calls, judging.question, self.format, self.code_similarity)
        if chosen is None:
            for call in calls:
                if call.answered:
                    call.reason = "agree-fail"
        return chosen
