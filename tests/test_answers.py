"""Answer extraction (answers/extract.py) and its use on rows (training/answers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router_proxy.answers.extract import (
    detect_format,
    extract,
    extract_choice,
    extract_code,
    extract_number,
    extract_text,
    group_code,
    options_of,
    unwrap,
)
from router_proxy.training.answers import extract_rows, task_formats
from router_proxy.training.dataset import DatasetError, RoutingRow, read_rows

MC_PROMPT = """Which gas do plants take in?
A) oxygen
B) carbon dioxide
C) nitrogen
D) helium
Answer:
B

Which planet is largest?
A) Mars
B) Venus
C) Jupiter
D) Mercury
Print only a single choice from "A" or "B" or "C" or "D" without explanation.
Answer:"""


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("C", "C"),
        ("c", "C"),
        ("C)", "C"),
        ("(C)", "C"),
        ("C.", "C"),
        ("Answer: C", "C"),
        ("answer: (c)", "C"),
        ("The answer is C.", "C"),
        ("The answer is C because it is a gas giant.", "C"),
        ("C) Jupiter is the largest planet", "C"),
        ("C\n\nJupiter is the largest.", "C"),
        ("I think (C) is right", "C"),
        ("Jupiter", "C"),  # the text of exactly one option
        ("The largest planet is jupiter!", "C"),
        ("['C']", "C"),  # stored as a Python list literal
        ("['C\\n']", "C"),
        ("I do not know", None),
        ("The answer is a bit unclear", None),  # "a" is an article here
        ("E", None),  # not an option of this question
        ("", None),
    ],
)
def test_choice(response: str, expected: str | None) -> None:
    assert extract(response, "choice", MC_PROMPT) == expected


def test_options_come_from_the_last_question() -> None:
    assert options_of(MC_PROMPT) == {"A": "Mars", "B": "Venus", "C": "Jupiter", "D": "Mercury"}


def test_choice_without_options_takes_any_letter() -> None:
    assert extract_choice("B)") == "B"
    assert extract_choice("A chart of the data") is None  # "A " reads as an article


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("42", "42"),
        ("The total is 1,000 apples.", "1000"),
        ("It costs 3.50 dollars", "3.5"),
        ("First 2, then 5, so the answer is 7.", "7"),
        ("Half: 1/2", "0.5"),
        ("#### 18", "18"),
        ("-3", "-3"),
        ("2.0", "2"),
        ("no digits here", None),
    ],
)
def test_number(response: str, expected: str | None) -> None:
    assert extract_number(response) == expected


def test_text_normalises_case_punctuation_and_articles() -> None:
    assert extract_text("The Eiffel Tower!") == extract_text("eiffel tower")
    assert extract_text("  \n") is None


def test_code_ignores_names_docstrings_comments_and_prose() -> None:
    a = 'Here it is:\n```python\ndef add(a, b):\n    """Sum."""\n    # add them\n    return a + b\n```\nDone.'
    b = "[PYTHON]\ndef plus(x: int, y: int) -> int:\n    return x + y\n[/PYTHON]"
    c = "def total(p, q):\n    return p + q\n\nprint(total(1, 2))"
    assert extract_code(a) == extract_code(b) == extract_code(c) is not None
    assert extract_code("def broken(:\n  pass") is None
    assert extract_code("I cannot write that.") is None


def test_code_survives_a_truncated_tail() -> None:
    text = "```python\ndef f(x):\n    return x * 2\n```\nExample: f(2) returns 4 and f(3"
    assert extract_code(text) is not None
    cut = "def f(x):\n    y = x * 2\n    return y\n\nprint(f(2"
    assert extract_code(cut) is not None


def test_similar_code_counts_as_one_answer() -> None:
    same = extract_code("def f(xs):\n    return sorted(xs)[::-1]")
    close = extract_code("def g(items):\n    return sorted(items)[::-1][:]")
    other = extract_code("def h(s):\n    return {c: s.count(c) for c in set(s)}")
    grouped = group_code([same, close, other, None], threshold=0.3)
    assert grouped[0] == grouped[1] != grouped[2]
    assert grouped[3] is None


def test_unwrap_reads_literals_only() -> None:
    assert unwrap("['a', 'b']") == "a\nb"
    assert unwrap("[__import__('os')]") == "[__import__('os')]"  # not evaluated


def test_format_detection() -> None:
    assert detect_format(MC_PROMPT, ["B"]) == "choice"
    assert detect_format("Write a function to add two numbers.", ["def f(a, b): ..."]) == "code"
    assert detect_format("What is 6 x 7?", ["42", "The answer is 42", "41"]) == "number"
    assert detect_format("Capital of France?", ["Paris", "paris."]) == "text"


def test_task_majority_overrides_odd_rows() -> None:
    rows = [
        RoutingRow(id="1", prompt="What is 2+2?", task="math", responses={"m": "4"}),
        RoutingRow(id="2", prompt="What is 3+3?", task="math", responses={"m": "6"}),
        RoutingRow(id="3", prompt="What is 1+1?", task="math", responses={"m": "two"}),
    ]
    assert task_formats(rows) == ["number"] * 3
    assert extract_rows(rows, ["m", "absent"]) == [["4", None], ["6", None], [None, None]]


def test_a_declared_format_wins_over_detection() -> None:
    # A short-text task whose answers happen to be numbers: "2010" and "2010." are the same
    # text, and "in 2010" is another text (a number reading would call all three "2010").
    responses = {"a": "2010", "b": "2010.", "c": "in 2010"}
    rows = [RoutingRow(id="1", prompt="Year?", task="years", responses=responses, format="text")]
    assert task_formats(rows) == ["text"]
    assert extract_rows(rows, ["a", "b", "c"]) == [["2010", "2010", "in 2010"]]
    undeclared = [RoutingRow(id="1", prompt="Year?", task="years", responses=responses)]
    assert task_formats(undeclared) == ["number"]
    assert extract_rows(undeclared, ["a", "b", "c"]) == [["2010", "2010", "2010"]]


def test_the_dataset_reader_checks_declared_formats(tmp_path: Path) -> None:
    good = {"id": "1", "prompt": "p", "format": "code"}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "format": "essay"}) + "\n")
    with pytest.raises(DatasetError, match="format"):
        read_rows(path)
    path.write_text(json.dumps(good) + "\n")
    assert read_rows(path)[0].format == "code"
