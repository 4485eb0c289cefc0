"""The length signal and its tokenizer: real cl100k counts, whole conversations, bounds."""

from __future__ import annotations

from typing import Any

import pytest

from router_proxy.signals import tokens
from router_proxy.signals.base import SignalResult
from router_proxy.signals.length import LengthSignal, LengthSignalConfig
from router_proxy.signals.tokens import EXACT_LIMIT, TokenCounter, shared_counter
from tests.support.signal_helpers import assert_refused, evaluate


def length(**kwargs: Any) -> LengthSignal:
    return LengthSignal(LengthSignalConfig(name="len", type="length", **kwargs))


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("tiktoken is great!", 6),  # OpenAI cookbook's cl100k_base example
        ("hello world", 2),
        ("Hello, world!", 4),
        ("你好世界", 5),
        ("def f(x):\n    return x * 2\n", 11),
        ("", 0),
        ("<|endoftext|>", 7),  # special-token text counts as plain text, never raises
    ],
)
def test_counts_are_real_cl100k_tokens(text: str, count: int) -> None:
    assert shared_counter().exact(text) == count
    assert shared_counter().count(text).exact


def test_value_is_the_count_and_bounds_are_inclusive() -> None:
    prompt = "tiktoken is great!"  # 6 tokens
    assert evaluate(length(min_tokens=6), prompt).fired
    assert not evaluate(length(min_tokens=7), prompt).fired
    assert evaluate(length(max_tokens=6), prompt).fired
    assert not evaluate(length(max_tokens=5), prompt).fired
    result = evaluate(length(min_tokens=2, max_tokens=10), prompt)
    assert result == SignalResult(True, 6, "6 tokens, in range 2..10")
    # 18 bytes cannot hold 100 tokens: settled without counting.
    assert evaluate(length(min_tokens=100), prompt).detail == "<=18 tokens, needs >= 100"


def test_whole_conversation_with_parts_and_tool_calls_is_counted() -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "hello world"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello world"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 5000}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "hello world"},
    ]
    counter = shared_counter()
    expected = counter.exact('hello world\nhello world\n\nhello world\nlookup\n{"city": "Paris"}')
    result = evaluate(length(min_tokens=1), conversation)
    assert result.value == expected
    assert expected < 30  # the image's base64 is not text


def test_empty_content_counts_zero() -> None:
    assert evaluate(length(max_tokens=0), "").fired
    assert evaluate(length(max_tokens=0), [{"role": "user", "content": None}]).value == 0
    assert evaluate(length(max_tokens=0), [{"role": "user", "content": []}]).detail == (
        "0 tokens, in range <= 0"
    )


def test_unicode_is_counted_by_bytes_not_characters() -> None:
    cjk = "機械学習は人工知能の一分野である。" * 10
    assert evaluate(length(min_tokens=len(cjk) // 2), cjk).fired  # > 0.5 token per char
    emoji = evaluate(length(min_tokens=1), "🙂" * 100)
    assert isinstance(emoji.value, int)
    assert emoji.value >= 100


def test_very_long_prompts_are_sampled_with_small_error() -> None:
    counter = shared_counter()
    text = (
        "The invoice for order 1234 is overdue; please pay it. " * 400 + "def f(x): pass\n"
    ) * 50
    assert len(text) > EXACT_LIMIT * 10
    estimate = counter.count(text)
    assert not estimate.exact
    exact = counter.exact(text)
    assert abs(estimate.tokens - exact) / exact < 0.03
    result = evaluate(length(min_tokens=100_000), text)
    assert result.detail.startswith("~")


@pytest.mark.parametrize("text", ["a" * 1_000_000, " " * 1_000_000, "😀" * 300_000, "7" * 999_999])
def test_pathological_megabyte_prompts_finish(text: str) -> None:
    result = evaluate(length(min_tokens=1), text)
    assert isinstance(result.value, int)
    assert result.value > 0


def test_vocabulary_is_checked_by_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_VOCAB_SHA256", "0" * 64)
    with pytest.raises(tokens.TokenizerUnavailable, match="wrong hash"):
        TokenCounter()


def test_bad_configs_are_refused() -> None:
    assert_refused(
        LengthSignalConfig,
        {"name": "l", "type": "length"},
        [
            ({}, "needs `min_tokens`, `max_tokens` or both"),
            ({"min_tokens": 10, "max_tokens": 5}, "could never fire"),
            ({"min_tokens": -1}, "greater than or equal to 0"),
            ({"min_token": 5}, "Extra inputs are not permitted"),
        ],
    )


def test_value_predicates_are_refused_with_a_hint() -> None:
    config = LengthSignalConfig(name="long", type="length", min_tokens=4000)
    problem = config.accepts_value(4000)
    assert problem is not None
    assert "min_tokens / max_tokens" in problem
    assert LengthSignal.cost_rank == 5


def test_counting_in_chunks_is_exact() -> None:
    """Chunks are cut where cl100k's pre-tokenizer splits anyway, so they add up."""
    from router_proxy.signals.tokens import CHUNK, RunningCount, shared_counter

    counter = shared_counter()
    samples = [
        "The quick brown fox jumps over the lazy dog. " * 200,
        "def f(x):\n    return [i ** 2 for i in range(x)]  # squares\n" * 150,
        "Grüße aus München, señor! Ça va? Что нового? 日本語のテキスト。 " * 120,
        '{"key": "value", "n": [1, 2, 3]} ' * 300,
        "word " * 5000,
    ]
    for text in samples:
        assert len(text) > 3 * CHUNK
        running = RunningCount(counter, text)
        count = running.total()
        assert not count.partial
        assert count.tokens == counter.exact(text)


def test_counting_stops_once_the_answer_is_known() -> None:
    from router_proxy.signals.tokens import CHUNK, RunningCount, shared_counter

    text = "plenty of words in this prompt " * 2000
    running = RunningCount(shared_counter(), text)
    count = running.reach(51)  # "more than 50 tokens?"
    assert count.partial
    assert count.tokens >= 51
    assert running.pos < 2 * CHUNK  # one chunk was enough
    result = evaluate(length(max_tokens=50), text)
    assert not result.fired
    assert result.detail.startswith(">=")
    # A later question about the same request continues from there, and ends exact.
    assert running.total().tokens == shared_counter().exact(text)


def test_text_too_small_to_reach_min_tokens_is_not_counted() -> None:
    from router_proxy.signals.tokens import RunningCount, shared_counter

    text = "a short prompt, well under the bar"
    running = RunningCount(shared_counter(), text)
    count = running.reach(1000)
    assert (count.tokens, count.at_most, running.pos) == (len(text), True, 0)
    result = evaluate(length(min_tokens=1000), text)
    assert not result.fired
    assert result.detail.startswith(f"<={len(text)}")
    # Multi-byte text: the ceiling is in bytes, not characters.
    assert RunningCount(shared_counter(), "日本語").reach(100).tokens == 9
