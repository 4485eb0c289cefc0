"""``router-proxy generate``, piece by piece: TASKS.yaml, reading the generator, the
filters, near-duplicates, the journal, retries. End to end: test_generate_e2e.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from router_proxy.answers.extract import extract, final_answer
from router_proxy.config.errors import ConfigError
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.static import StaticEncoder
from router_proxy.errors import UpstreamError, UpstreamStatusError, UpstreamTimeoutError
from router_proxy.training.generate.answering import answer_messages, pool_answers
from router_proxy.training.generate.calls import RetryPolicy, is_transient, reply_text
from router_proxy.training.generate.filters import FilterSettings, verdict
from router_proxy.training.generate.generation import (
    generation_messages,
    near_duplicates,
    read_draft,
)
from router_proxy.training.generate.store import (
    AnswerRecord,
    Journal,
    JournalError,
    MetaRecord,
    QueryRecord,
)
from router_proxy.training.generate.tasks import TaskSpec, load_tasks, parse_tasks

TASKS = """\
tasks:
  - name: arithmetic
    description: Everyday sums.
    format: number
    topics: [shopping, travel]
  - name: law
    description: Which doctrine decides a dispute.
    format: multiple_choice
    examples: ["Is a promise without payment binding?"]
"""
MATH = TaskSpec(name="arithmetic", description="sums", format="number")
LAW = TaskSpec(name="law", description="doctrines", format="multiple_choice")
CODE = TaskSpec(name="code", description="functions", format="code")
LOOP = "def f(items):\n    out = []\n    for item in items:\n        if item % 2:\n            out.append(item * 3)\n    return sorted(out)"
MC = "Which doctrine applies?\nA) estoppel\nB) negligence\nC) consideration\nD) laches"


def test_the_example_tasks_file_loads() -> None:
    tasks = load_tasks(Path(__file__).parent.parent / "configs" / "tasks" / "example.yaml")
    assert {t.format for t in tasks} == {"multiple_choice", "number", "short_text", "code"}


def test_tasks_parse() -> None:
    math, law = parse_tasks(TASKS)
    assert (math.name, math.format, math.topics) == ("arithmetic", "number", ["shopping", "travel"])
    assert law.answer_format.extract_as == "choice"
    assert math.fingerprint() != parse_tasks(TASKS.replace("sums", "totals"))[0].fingerprint()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TASKS.replace("format: number", "format: essay"), "tasks[0].format: input should be"),
        (
            TASKS.replace("name: law", "name: arithmetic"),
            "tasks[1].name: duplicate task 'arithmetic' (line 6)",
        ),
        (
            TASKS.replace("    description: Everyday sums.\n", ""),
            "tasks[0].description: required key is missing (line 2)",
        ),
        (TASKS.replace("topics:", "topic:"), "tasks[0].topic: unknown key (line 5)"),
        ("tasks: []", "tasks: list should have at least 1 item"),
        ("- a\n- b\n", "expected a mapping with a `tasks` list"),
        ("tasks: [\n", "invalid YAML"),
    ],
)
def test_task_mistakes_name_the_yaml_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tasks(text, source="TASKS.yaml")
    assert expected in str(caught.value)


def test_generation_prompt_comes_from_the_templates() -> None:
    task = parse_tasks(TASKS)[0]
    prompt = generation_messages(task, 3, 10)[0]["content"]
    assert "Task: Everyday sums." in prompt
    assert "Write request 4 of 10" in prompt
    assert "Subject of this request: travel" in prompt  # topics cycle: 3 % 2 == 1
    assert "number only" in prompt
    assert "$" not in prompt
    law = generation_messages(parse_tasks(TASKS)[1], 0, 10)[0]["content"]
    assert "- Is a promise without payment binding?" in law
    assert '"A) ..."' in law
    system, user = answer_messages(LAW, MC)
    assert system["role"] == "system"
    assert "ANSWER: X" in system["content"]
    assert user == {"role": "user", "content": MC}


def test_reading_the_generators_reply() -> None:
    draft = read_draft("arithmetic-00001", MATH, "QUESTION:\nWhat is 1,200 plus 34?\nANSWER: 1,234")
    assert (draft.question, draft.key, draft.problem) == ("What is 1,200 plus 34?", "1234", None)
    law = read_draft("law-00000", LAW, f"**Question:** {MC}\n**Answer:** C) consideration")
    assert (law.question, law.key, law.problem) == (MC, "C", None)
    assert read_draft("x", MATH, "What is 2 plus 2?").key is None  # it did not answer
    assert read_draft("x", LAW, "QUESTION: Which doctrine?\nANSWER: B").problem is not None
    assert (
        read_draft("x", MATH, "QUESTION:\nANSWER: 4").problem
        == "no question in the generator's reply"
    )
    code = read_draft(
        "x",
        CODE,
        "QUESTION: Write add(a, b).\nANSWER:\n```python\ndef add(a, b):\n    return a + b\n```",
    )
    assert code.key == "def v0(v1, v2):\n    return v1 + v2"


def test_answers_are_read_from_the_final_answer_line() -> None:
    assert final_answer("First A, or maybe B.\nANSWER: C") == "C"
    assert final_answer("no marker") == "no marker"
    assert extract("I think A is tempting.\nFinal answer: B", "choice", prompt=MC) == "B"
    assert extract("The sum is 12, not 13.\nANSWER: 12", "number") == "12"
    assert extract("It is in France.\nANSWER: Paris.", "text") == "paris"
    key, answers = pool_answers(
        CODE,
        "Write add(a, b).",
        extract("def add(a, b):\n    return a + b", "code"),
        ["```python\ndef plus(x, y):\n    return x + y\n```", LOOP, "no code"],
    )
    assert answers[0] == key
    assert answers[1] != key
    assert answers[2] is None


@pytest.mark.parametrize(
    ("key", "answers", "expected"),
    [
        ("4", ["4", "4", "5", "6"], None),
        (None, ["4", "4", "5", "6"], "generator_no_answer"),
        ("5", ["4", "4", "5", "6"], "generator_disagrees"),
        ("4", ["4", "4", "4", "4"], "unanimous"),
        ("4", ["4", "5", "6", "7"], "no_majority"),  # a four-way tie
        ("4", ["4", "4", "5", "5"], "no_majority"),  # a tie at the top
        ("4", ["4", None, None, "5"], "no_majority"),  # 1/4 of the pool
        ("4", ["4", "4", None, None], None),  # no answer is a wrong one: it separates
    ],
)
def test_filters(key: str | None, answers: list[str | None], expected: str | None) -> None:
    assert verdict(key, answers, FilterSettings()) == expected


def test_filters_can_be_switched_off() -> None:
    assert verdict("5", ["4", "4", "5", "6"], FilterSettings(agreement=False)) is None
    assert verdict("4", ["4", "4", "4"], FilterSettings(differentiation=False)) is None
    assert verdict(None, ["4", "5"], FilterSettings(False, False)) is None
    # 2 of 5 is a plurality but not a majority: only the differentiation filter minds.
    share = ["4", "4", "5", "6", "7"]
    assert verdict("4", share, FilterSettings(differentiation=False)) is None
    assert verdict("4", share, FilterSettings()) == "no_majority"


def test_near_duplicates_are_dropped_in_order() -> None:
    questions = [
        "What is the capital of France?",
        "Explain how a contract is formed under English law.",
        "What is the capital of France?",
        "what is the capital of france",
        "Write a Python function that reverses a list.",
    ]
    drafts = [
        read_draft(f"q-{i}", MATH, f"QUESTION: {q}\nANSWER: 1") for i, q in enumerate(questions)
    ]
    encoder = StaticEncoder.load(EmbeddingsConfig())
    assert near_duplicates(drafts, encoder, 0.95) == {"q-2", "q-3"}
    assert near_duplicates(drafts, encoder, 1.01) == set()


def _query(qid: str, text: str = "QUESTION: q\nANSWER: 1") -> QueryRecord:
    return QueryRecord(id=qid, model="writer", task="t", index=0, text=text, cost=0.5)


def test_journal_round_trip_and_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl.journal"
    with Journal(path) as journal:
        journal.load()
        journal.append(MetaRecord(generator="writer", tasks={"t": "abc"}))
        journal.append(_query("t-00000"))
        journal.append(AnswerRecord(id="t-00000", model="m", text="ANSWER: 1", cost=0.25))
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"kind":"answer","id":"t-00000","mo')  # killed mid-write
    with Journal(path) as journal:
        state = journal.load()
        assert path.read_bytes() == whole  # the torn line is cut off
        journal.append(AnswerRecord(id="t-00000", model="n", text="ANSWER: 2"))
    with Journal(path) as journal:
        state = journal.load()
    assert state.generator == "writer"
    assert state.tasks == {"t": "abc"}
    assert set(state.answers) == {("t-00000", "m"), ("t-00000", "n")}
    assert state.spent() == 0.75


def test_journal_keeps_a_complete_line_without_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(_query("t-00000").model_dump_json().encode())  # killed before "\n"
    with Journal(path) as journal:
        assert set(journal.load().queries) == {"t-00000"}
        journal.append(_query("t-00001"))
    with Journal(path) as journal:
        assert set(journal.load().queries) == {"t-00000", "t-00001"}


def test_journal_refuses_corruption_a_second_run_and_another_setup(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(b"not json\n" + _query("t-00000").model_dump_json().encode() + b"\n")
    with Journal(path) as journal, pytest.raises(JournalError, match=":1: not a journal record"):
        journal.load()
    path.unlink()
    with Journal(path) as journal:
        with pytest.raises(JournalError, match="another run is using"), Journal(path):
            pass
        state = journal.load()
        meta = state.check("writer", {"t": "abc"})
        assert meta is not None
        state.add(meta)
        assert state.check("writer", {"t": "abc"}) is None
        assert state.check("writer", {"t": "abc", "u": "def"}) is not None  # a new task
        with pytest.raises(JournalError, match="generator 'writer', not 'other'"):
            state.check("other", {"t": "abc"})
        with pytest.raises(JournalError, match=r"task\(s\) \['t'\] changed"):
            state.check("writer", {"t": "xyz"})


def test_which_failures_are_retried() -> None:
    def status(code: int, retry_after: str | None = None) -> UpstreamStatusError:
        headers = {"retry-after": retry_after} if retry_after else None
        return UpstreamStatusError("x", upstream_status=code, headers=headers)

    assert all(is_transient(status(c)) for c in (408, 429, 500, 502, 503, 529))
    assert not any(is_transient(status(c)) for c in (400, 401, 403, 404, 422))
    assert is_transient(UpstreamTimeoutError("slow"))
    assert is_transient(UpstreamError("down"))
    policy = RetryPolicy(backoff=1.0, cap=30.0)
    assert 0.5 <= policy.delay(0, UpstreamError("x")) <= 1.0
    assert 4.0 <= policy.delay(3, UpstreamError("x")) <= 8.0
    assert policy.delay(0, status(429, "7")) == 7.0
    assert policy.delay(0, status(429, "600")) == 30.0


def test_reply_text() -> None:
    assert reply_text(b'{"choices":[{"message":{"content":"hi"}}]}') == "hi"
    assert reply_text(b'{"choices":[{"message":{"content":null}}]}') == ""
    assert reply_text(b'{"choices":[]}') == ""
