"""The conversation signal: user turns, tools, images; and the shared text walk."""

from __future__ import annotations

from typing import Any

from router_proxy.signals.base import SignalResult
from router_proxy.signals.conversation import (
    ConversationSignal,
    ConversationSignalConfig,
    conversation_text,
)
from tests.support.signal_helpers import assert_refused, ctx_of, evaluate

TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def conversation(**kwargs: Any) -> ConversationSignal:
    config = ConversationSignalConfig(name="c", type="conversation", **kwargs)
    return ConversationSignal(config)


def turns(n: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "be brief"}]
    for i in range(n):
        messages += [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]
    return messages


def test_counts_user_turns_only() -> None:
    signal = conversation(min_turns=3)
    assert not evaluate(signal, turns(2)).fired
    result = evaluate(signal, turns(3))
    assert result == SignalResult(True, True, "3 user turns, tools: no, images: no")
    assert evaluate(conversation(max_turns=1), turns(1)).detail == (
        "1 user turn, tools: no, images: no"
    )
    assert evaluate(conversation(max_turns=1), turns(2)).detail == (
        "2 user turns, tools: no, images: no (more than 1 turns)"
    )
    only_system = ctx_of([{"role": "system", "content": "x"}])
    assert evaluate(conversation(max_turns=0), only_system).fired


def test_tools_and_legacy_functions() -> None:
    wants_tools = conversation(tools=True)
    assert evaluate(wants_tools, turns(1), tools=[TOOL]).fired
    legacy = ctx_of(turns(1), functions=[TOOL["function"]])
    assert evaluate(wants_tools, legacy).fired
    assert not evaluate(wants_tools, turns(1), tools=[]).fired
    no_tools = evaluate(wants_tools, turns(1))
    assert no_tools.detail == "1 user turn, tools: no, images: no (tools missing)"
    assert evaluate(conversation(tools=False), turns(1)).fired
    assert not evaluate(conversation(tools=False), turns(1), tools=[TOOL]).fired


def test_images_in_any_message() -> None:
    with_image: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, IMAGE]},
        {"role": "assistant", "content": "a cat"},
        {"role": "user", "content": "thanks"},
    ]
    assert evaluate(conversation(images=True), with_image).fired
    text_parts = [{"role": "user", "content": [{"type": "text", "text": "no image"}]}]
    assert not evaluate(conversation(images=True), text_parts).fired
    assert evaluate(conversation(images=False), text_parts).fired
    empty: list[dict[str, Any]] = [
        {"role": "user", "content": []},
        {"role": "user", "content": None},
    ]
    assert evaluate(conversation(images=False, min_turns=2), empty).fired


def test_all_conditions_must_hold_and_all_failures_are_listed() -> None:
    signal = conversation(min_turns=2, max_turns=4, tools=True, images=False)
    assert evaluate(signal, turns(3), tools=[TOOL]).fired
    messages = [{"role": "user", "content": [IMAGE]}]
    result = evaluate(signal, messages)
    assert result == SignalResult(
        False,
        False,
        "1 user turn, tools: no, images: yes (fewer than 2 turns; tools missing; images present)",
    )


def test_long_conversations() -> None:
    many = [*turns(5000), {"role": "user", "content": "ü" * 1_000_000}]
    assert evaluate(conversation(min_turns=5001), many).fired


def test_conversation_text_adds_tool_calls_to_scope_all() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}, IMAGE]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
                {"id": "2", "type": "function", "function": {"arguments": None}},
                "not a dict",
            ],
        },
        {"role": "assistant", "function_call": {"name": "old", "arguments": '{"a": 1}'}},
    ]
    ctx = ctx_of(messages)
    assert conversation_text(ctx) == 'weather in Paris?\n\n\nweather\n{}\nold\n{"a": 1}'
    assert conversation_text(ctx, "last_user") == "weather in Paris?"


def test_bad_configs_are_refused() -> None:
    assert_refused(
        ConversationSignalConfig,
        {"name": "c", "type": "conversation"},
        [
            ({}, "needs at least one of"),
            ({"min_turns": 3, "max_turns": 2}, "could never fire"),
            ({"max_turns": -1}, "greater than or equal to 0"),
            ({"tools": "some"}, "Input should be a valid boolean"),
            ({"turns": 2}, "Extra inputs are not permitted"),
        ],
    )


def test_is_boolean_and_cheap() -> None:
    config = ConversationSignalConfig(name="c", type="conversation", tools=True)
    assert config.accepts_value(True) is not None
    assert ConversationSignal.cost_rank == 1
