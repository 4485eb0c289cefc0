"""The pure Messages <-> chat mappings (router_proxy/translate/), both directions: what the
``/v1/messages`` surface sends upstream and what it answers (tests/test_surface_messages.py
drives them end to end). The provider's direction is covered by test_provider_anthropic."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from router_proxy.errors import InvalidRequestError
from router_proxy.translate.anthropic_to_chat import (
    refuse_server_features,
    to_chat_request,
    to_openai_completion,
)
from router_proxy.translate.anthropic_types import MessagesRequest
from router_proxy.translate.chat_to_anthropic import (
    AnthropicStreamWriter,
    to_anthropic_message,
    to_anthropic_request,
)
from router_proxy.translate.common import SSEReader, sse_event
from tests.support.provider_helpers import make_call

Json = dict[str, Any]
PNG = "iVBORw0KGgo="
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def chat(**body: Any) -> Json:
    """The chat body for a Messages request (model and max_tokens filled in)."""
    request = {"model": "auto", "max_tokens": 64} | body
    return to_chat_request(MessagesRequest.model_validate(request))


def user(content: Any) -> Json:
    return {"role": "user", "content": content}


def text(value: str, **extra: Any) -> Json:
    return {"type": "text", "text": value, **extra}


# --- Messages request -> chat body ---------------------------------------------------


def test_plain_request() -> None:
    assert chat(messages=[user("hi")]) == {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
    }


def test_system_as_text_blocks_with_cache_control() -> None:
    system = [text("You are Claude Code.", cache_control={"type": "ephemeral"}), text("Be brief.")]
    body = chat(system=system, messages=[user([text("hi", cache_control={"type": "ephemeral"})])])
    assert body["messages"] == [
        {"role": "system", "content": "You are Claude Code.\n\nBe brief."},
        {"role": "user", "content": "hi"},  # one text block: plain content
    ]


def test_images_and_documents_become_parts() -> None:
    content = [
        text("look"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
        {
            "type": "document",
            "title": "r.pdf",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        },
    ]
    (message,) = chat(messages=[user(content)])["messages"]
    assert message["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        {"type": "text", "text": "doc"},
        {
            "type": "file",
            "file": {"filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        },
    ]


def test_tool_use_and_tool_result_history() -> None:
    messages = [
        user("weather in Paris?"),
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "they want weather", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xyz"},
                text("Let me check."),
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        user(
            [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [
                        text("no clock"),
                        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    ],
                },
                text("thanks"),
            ]
        ),
    ]
    assert chat(messages=messages)["messages"] == [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",  # thinking blocks are dropped
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no clock"},
        {
            "role": "user",  # a tool result's image follows in the user's message
            "content": [
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]


def test_an_assistant_turn_of_only_tool_calls_or_only_thinking() -> None:
    use = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    thinking = {"type": "thinking", "thinking": "hmm"}
    turns = [user("a"), {"role": "assistant", "content": [use]}, user("b")]
    assert chat(messages=turns)["messages"][1]["content"] is None
    turns[1] = {"role": "assistant", "content": [thinking]}
    assert chat(messages=turns)["messages"][1] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
            None,
        ),
        ({"type": "none"}, "none", None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
    ],
)
def test_tools_and_tool_choice(choice: Json, expected: Any, parallel: bool | None) -> None:
    body = chat(
        messages=[user("hi")],
        tools=[WEATHER | {"cache_control": {"type": "ephemeral"}}],
        tool_choice=choice,
    )
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Current weather in a city",
            },
        }
    ]
    assert body["tool_choice"] == expected
    assert body.get("parallel_tool_calls") == parallel


def test_tool_choice_without_tools_is_dropped() -> None:
    assert "tool_choice" not in chat(messages=[user("hi")], tool_choice={"type": "any"})


def test_sampling_stop_user_stream_and_what_is_dropped() -> None:
    body = chat(
        messages=[user("hi")],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END", "STOP"],
        metadata={"user_id": "user-7"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        stream=True,
        service_tier="auto",
    )
    assert body == {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "user": "user-7",
    }


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [user("hi")]},  # max_tokens is required, as Anthropic requires
        {"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
        {
            "max_tokens": 5,
            "messages": [user([{"type": "tool_use", "id": "t", "name": "f", "input": {}}])],
        },
        {"max_tokens": 5, "messages": [user([{"type": "server_tool_use", "id": "s"}])]},
        {"max_tokens": 5, "messages": [user("hi")], "temperature": 1.5},
        {"max_tokens": "5", "messages": [user("hi")]},
        {"max_tokens": 5, "messages": []},
    ],
)
def test_invalid_requests_are_refused_by_the_shapes(body: Json) -> None:
    with pytest.raises(ValidationError):
        MessagesRequest.model_validate({"model": "auto"} | body)


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_20250305", "name": "web_search"},
        {"type": "bash_20250124", "name": "bash"},
    ],
)
def test_server_tools_are_refused_by_name(tool: Json) -> None:
    with pytest.raises(InvalidRequestError, match=f"server tool '{tool['type']}'") as caught:
        refuse_server_features({"tools": [WEATHER, tool]})
    assert caught.value.param == "tools.1.type"
    with pytest.raises(InvalidRequestError, match="mcp_servers"):
        refuse_server_features({"mcp_servers": [{"url": "https://mcp"}]})
    refuse_server_features({"tools": [WEATHER, WEATHER | {"type": "custom"}]})


def test_a_request_goes_to_chat_and_back_to_messages_unchanged() -> None:
    """The two request directions are inverses on what both sides can say."""
    messages = [
        user(
            [
                text("weather?"),
                {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}},
            ]
        ),
        {
            "role": "assistant",
            "content": [
                text("Checking."),
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        user([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}, text("and?")]),
    ]
    request = {
        "model": "claude-x",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": messages,
        "tools": [WEATHER],
        "tool_choice": {"type": "any"},
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "metadata": {"user_id": "u1"},
    }
    body = chat(**request)
    back = to_anthropic_request(body, model="claude-x", default_max_tokens=1, stream=False)
    assert back == request


# --- chat completion -> Messages message ---------------------------------------------


def completion(message: Json, finish: str | None = "stop", **extra: Any) -> Json:
    choice = {"index": 0, "message": message, "finish_reason": finish} | extra
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "model": "m",
        "choices": [choice],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
    }


def test_text_reply() -> None:
    assert to_anthropic_message(completion({"role": "assistant", "content": "hello"})) == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }


def test_tool_calls_become_tool_use_blocks_with_parsed_input() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
        {"id": "call_3", "type": "function", "function": {"name": "h", "arguments": "{broken"}},
    ]
    reply = completion({"role": "assistant", "content": "Sure.", "tool_calls": calls}, "tool_calls")
    message = to_anthropic_message(reply)
    assert message["content"] == [
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "h", "input": {}},  # malformed: {}
    ]
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "extra", "reason", "sequence"),
    [
        ("stop", {}, "end_turn", None),
        ("length", {}, "max_tokens", None),
        ("tool_calls", {}, "tool_use", None),
        ("content_filter", {}, "refusal", None),
        (None, {}, "end_turn", None),
        ("stop", {"stop_reason": "END"}, "stop_sequence", "END"),  # vLLM names the match
        ("stop", {"stop_reason": 128001}, "end_turn", None),  # ... or the EOS token id
    ],
)
def test_stop_reasons(finish: str | None, extra: Json, reason: str, sequence: str | None) -> None:
    message = to_anthropic_message(
        completion({"role": "assistant", "content": "x"}, finish, **extra)
    )
    assert (message["stop_reason"], message["stop_sequence"]) == (reason, sequence)


def test_cached_prompt_tokens_are_counted_apart_and_ids_kept() -> None:
    reply = completion({"role": "assistant", "content": "x"})
    reply["usage"]["prompt_tokens_details"] = {"cached_tokens": 10}
    reply["id"] = "msg_upstream"
    message = to_anthropic_message(reply)
    assert message["usage"] == {
        "input_tokens": 2,
        "output_tokens": 3,
        "cache_read_input_tokens": 10,
    }
    assert message["id"] == "msg_upstream"


def test_a_stop_sequence_survives_anthropic_to_chat_to_anthropic() -> None:
    reply = {
        "id": "msg_1",
        "model": "claude-x",
        "content": [text("partial")],
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
        "usage": {"input_tokens": 4, "output_tokens": 1},
    }
    data, _ = to_openai_completion(reply, make_call("claude-x"))
    assert data["choices"][0]["finish_reason"] == "stop"
    back = to_anthropic_message(data)
    assert (back["stop_reason"], back["stop_sequence"]) == ("stop_sequence", "END")
    assert back["content"] == reply["content"]
    assert back["usage"] == reply["usage"]


# --- chat chunks -> Messages stream events --------------------------------------------


def chunk(delta: Json, finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    data = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [choice],
    }
    return orjson.dumps(data | extra)


def events(writer: AnthropicStreamWriter, *chunks: bytes) -> list[tuple[str, Json]]:
    out = [event for data in chunks for event in writer.feed(data)]
    pairs = SSEReader().feed(b"".join(out))
    parsed = [(name, orjson.loads(data)) for name, data in pairs]
    assert all(name == payload["type"] for name, payload in parsed)
    return parsed


USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}


def test_a_text_stream() -> None:
    got = events(
        AnthropicStreamWriter(),
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        orjson.dumps({"id": "chatcmpl-s", "choices": [], "usage": USAGE}),
        b"[DONE]",
    )
    assert [name for name, _ in got] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = got[0][1]["message"]
    assert start["id"] == "msg_s"
    assert start["model"] == "m"
    assert start["usage"] == {"input_tokens": 0, "output_tokens": 0}  # not known yet
    assert got[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert got[2][1]["delta"] == {"type": "text_delta", "text": "Hel"}
    assert got[5][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 9, "output_tokens": 2},
    }


def test_a_stream_with_text_then_two_tool_calls() -> None:
    head = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    got = events(
        AnthropicStreamWriter(),
        chunk({"role": "assistant", "content": "Checking."}),
        chunk({"tool_calls": [head]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}
                ]
            }
        ),
        chunk({}, "tool_calls"),
        b"[DONE]",
    )
    starts = [p["content_block"] for name, p in got if name == "content_block_start"]
    assert starts == [
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "call_a", "name": "f", "input": {}},
        {"type": "tool_use", "id": "call_b", "name": "g", "input": {}},
    ]
    pieces = [(p["index"], p["delta"]) for name, p in got if name == "content_block_delta"]
    assert pieces == [
        (0, {"type": "text_delta", "text": "Checking."}),
        (1, {"type": "input_json_delta", "partial_json": '{"a": '}),
        (1, {"type": "input_json_delta", "partial_json": "1}"}),
        (2, {"type": "input_json_delta", "partial_json": "{}"}),
    ]
    stops = [p["index"] for name, p in got if name == "content_block_stop"]
    assert stops == [0, 1, 2]
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_a_stream_that_ends_without_done_still_ends_its_message_once() -> None:
    writer = AnthropicStreamWriter()
    got = events(writer, chunk({"content": "x"}))
    tail = [orjson.loads(d)["type"] for _, d in SSEReader().feed(b"".join(writer.finish()))]
    assert [name for name, _ in got] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ]
    assert tail == ["content_block_stop", "message_delta", "message_stop"]
    assert writer.finish() == []
    assert writer.feed(b"[DONE]") == []


def test_sse_reader_splits_events_and_holds_partial_ones() -> None:
    reader = SSEReader()
    one, two = sse_event({"a": 1}), sse_event({"b": 2}, "named")
    assert reader.feed(one + two[:7]) == [("message", b'{"a":1}')]
    assert reader.feed(two[7:]) == [("named", b'{"b":2}')]
    assert reader.feed(b"data: [DONE]") == []
    assert reader.flush() == [("message", b"[DONE]")]
