"""The generator's side: its prompt, reading its reply, dropping near-duplicates.

One call writes one query and the generator's own answer to it (the paper's filter needs
the generator to answer its own question). Query ``i`` of a task gets the id
``TASK-0000i`` and, when the task lists topics, topic ``i mod len(topics)`` (the paper
cycles through subjects), so a re-run asks for exactly the same queries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from router_proxy.answers.extract import extract
from router_proxy.embeddings.base import Encoder
from router_proxy.training.generate.calls import Messages
from router_proxy.training.generate.tasks import TaskSpec
from router_proxy.training.generate.templates import render

_QUESTION = re.compile(r"^[ \t*#]*question[ \t*]*:[ \t*]*", re.IGNORECASE | re.MULTILINE)
_ANSWER = re.compile(r"^[ \t*#]*answer[ \t*]*:[ \t*]*", re.IGNORECASE | re.MULTILINE)
BATCH = 256


def query_id(task: str, index: int) -> str:
    return f"{task}-{index:05d}"


def generation_messages(task: TaskSpec, index: int, count: int) -> Messages:
    topic = (
        f"Subject of this request: {task.topics[index % len(task.topics)]}\n" if task.topics else ""
    )
    examples = "".join(f"- {e}\n" for e in task.examples)
    prompt = render(
        "generate",
        description=task.description.strip(),
        topic=topic,
        examples=f"Requests of this kind look like:\n{examples}" if examples else "",
        number=index + 1,
        count=count,
        format_rules=render(f"generate_{task.format}"),
    )
    return [{"role": "user", "content": prompt}]


@dataclass(frozen=True)
class Draft:
    """A generated query, read from the generator's reply."""

    id: str
    task: TaskSpec
    question: str  # '' when the reply held none
    key: str | None  # the generator's own answer, extracted in the task's format
    problem: str | None  # why the query is unusable (malformed), else None


def read_draft(query_id: str, task: TaskSpec, reply: str) -> Draft:
    """Split ``QUESTION: ... ANSWER: ...``; the question must suit the task's format."""
    start = _QUESTION.search(reply)
    body = reply[start.end() :] if start else reply
    answers = list(_ANSWER.finditer(body))
    question = (body[: answers[-1].start()] if answers else body).strip()
    question = _unquote(question)
    if not question:
        return Draft(query_id, task, "", None, "no question in the generator's reply")
    if not answers:
        return Draft(query_id, task, question, None, None)
    raw_key = body[answers[-1].end() :].strip()
    fmt = task.answer_format
    key = extract(raw_key, fmt.extract_as, prompt=question) if raw_key else None
    return Draft(query_id, task, question, key, fmt.check_question(question))


def _unquote(text: str) -> str:
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def near_duplicates(drafts: Sequence[Draft], encoder: Encoder, threshold: float) -> set[str]:
    """Ids of the drafts whose question has cosine >= ``threshold`` with an earlier kept
    one (in the order given), by the policy's encoder."""
    vectors = np.concatenate(
        [
            encoder.encode([d.question for d in drafts[i : i + BATCH]])
            for i in range(0, len(drafts), BATCH)
        ]
        or [np.zeros((0, encoder.dim), dtype=np.float32)]
    )
    kept = np.zeros_like(vectors)
    count = 0
    dropped: set[str] = set()
    for draft, vector in zip(drafts, vectors, strict=True):
        if count and float(np.max(kept[:count] @ vector)) >= threshold:
            dropped.add(draft.id)
            continue
        kept[count] = vector
        count += 1
    return dropped
