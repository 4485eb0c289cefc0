"""The pool's side: how a query is put to each model, and reading their answers.

The stored row's ``prompt`` is the bare query (what the router will see when serving);
the format instruction travels as a system message, asking for a final ``ANSWER:`` line
that ``answers.final_answer`` reads (code: one fenced function). Answers are extracted
as CASCAL's trainer extracts them (``answers.extract``), so the filters here and the
consensus there agree on what counts as the same answer.

Code is the weak format: answers are canonicalised functions grouped by token
similarity, not run; two similar functions can behave differently, and the generator's
code "agreeing" with the pool means only that it reads alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from router_proxy.answers.extract import CODE_SIMILARITY, extract, group_code
from router_proxy.training.generate.calls import Messages
from router_proxy.training.generate.tasks import TaskSpec
from router_proxy.training.generate.templates import render


def answer_messages(task: TaskSpec, question: str) -> Messages:
    return [
        {"role": "system", "content": render(f"answer_{task.format}")},
        {"role": "user", "content": question},
    ]


def pool_answers(
    task: TaskSpec,
    question: str,
    key: str | None,
    responses: Sequence[str],
    code_similarity: float = CODE_SIMILARITY,
) -> tuple[str | None, list[str | None]]:
    """The generator's answer and each pool model's, comparable with ``==``: code answers
    (the generator's among them) become their group of similar code."""
    fmt = task.answer_format.extract_as
    answers = [extract(text, fmt, prompt=question) for text in responses]
    if fmt != "code":
        return key, answers
    both = group_code([key, *answers], code_similarity)
    return both[0], both[1:]
