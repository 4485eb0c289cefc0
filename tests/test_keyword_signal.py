"""The keyword signal: case-insensitive, word boundaries, regexes, scopes."""

from __future__ import annotations

from typing import Any

import pytest

from router_proxy.signals.keyword import KeywordSignal, KeywordSignalConfig
from tests.support.signal_helpers import evaluate


def keyword(**kwargs: Any) -> KeywordSignal:
    return KeywordSignal(KeywordSignalConfig(name="k", type="keyword", **kwargs))


@pytest.mark.parametrize(
    ("text", "fired"),
    [
        ("I love Python", True),
        ("PYTHON!", True),
        ("pythonic code", False),  # word boundary
        ("cpython internals", False),
        ("", False),
    ],
)
def test_any_is_case_insensitive_on_word_boundaries(text: str, fired: bool) -> None:
    assert evaluate(keyword(any=["python"]), text).fired is fired


def test_terms_with_punctuation_and_phrases() -> None:
    signal = keyword(any=["c++", ".NET", "stack trace"])
    assert evaluate(signal, "a C++ question").fired
    assert evaluate(signal, "on .net core").fired
    assert evaluate(signal, "here is my Stack Trace:").fired
    assert not evaluate(signal, "abc++ is not c plus plus").fired
    assert not evaluate(signal, "stack traces").fired


def test_regex_terms_and_explanations() -> None:
    signal = keyword(any=[r"re:\bdef\s+\w+\(", "lambda"])
    result = evaluate(signal, "def  foo(x): pass")
    assert result.fired
    assert result.detail == "matched 'def  foo('"
    assert not evaluate(signal, "define the term").fired


def test_all_needs_every_term() -> None:
    signal = keyword(all=["invoice", "overdue"])
    assert evaluate(signal, "The invoice is OVERDUE").fired
    missing = evaluate(signal, "the invoice is paid")
    assert not missing.fired
    assert "'overdue' not found" in missing.detail


def test_case_sensitive_option() -> None:
    signal = keyword(any=["SQL"], case_sensitive=True)
    assert evaluate(signal, "write SQL").fired
    assert not evaluate(signal, "write sql").fired


def test_scopes_and_list_of_parts_content() -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "You know python."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "tell me about rust"},
                {"type": "image_url", "image_url": {"url": "http://x/python.png"}},
            ],
        },
        {"role": "assistant", "content": "Rust is..."},
        {"role": "user", "content": "and about go?"},
    ]
    assert not evaluate(keyword(any=["rust"]), conversation).fired  # last user turn only
    assert evaluate(keyword(any=["rust"], scope="user"), conversation).fired
    assert not evaluate(keyword(any=["python"], scope="user"), conversation).fired
    assert evaluate(keyword(any=["python"], scope="all"), conversation).fired


def test_unicode_and_long_prompts() -> None:
    signal = keyword(any=["café", "straße"])
    assert evaluate(signal, "Un CAFÉ, s'il vous plaît").fired
    assert evaluate(signal, "x " * 200_000 + "Straße").fired


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="needs `any` or `all`"):
        KeywordSignalConfig(name="k", type="keyword")
    with pytest.raises(ValueError, match="not a valid regex"):
        KeywordSignalConfig(name="k", type="keyword", any=["re:[a-"])
    with pytest.raises(ValueError, match="empty term"):
        KeywordSignalConfig(name="k", type="keyword", any=["  "])
