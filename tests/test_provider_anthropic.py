"""The Anthropic adapter: translation both ways, and calls against a real HTTP upstream
that checks requests the way the Messages API does (tests/support/upstream.py). What every adapter
promises alike (errors, timeouts, the OpenAI shape of replies and streams) is in
tests/test_provider_contract.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from router_proxy.errors import InvalidRequestError, UpstreamError
from router_proxy.protocol import Usage
from router_proxy.providers.anthropic import (
    AnthropicProvider,
    AnthropicProviderConfig,
    to_anthropic_request,
)
from router_proxy.providers.anthropic_stream import to_openai_completion
from router_proxy.providers.registry import PROVIDER_TYPES
from tests.support.provider_helpers import (
    ANTHROPIC_KEY,
    WEATHER_TOOL,
    anyio_backend_fixture,  # noqa: F401
    content_of,
    deltas,
    make_anthropic,
    make_call,
    read_chunks,
    started,
    up_fixture,  # noqa: F401
    upstream_fixture,  # noqa: F401
)
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.anyio

PNG_URL = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
async def provider(up: FakeUpstream) -> AsyncIterator[AnthropicProvider]:
    async with started(make_anthropic(up.base_url)) as provider:
        yield provider


def translate(**body: Any) -> dict[str, Any]:
    return to_anthropic_request(body, model="claude-x", default_max_tokens=4096, stream=False)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


# --- config and registry ----------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    config = AnthropicProviderConfig(type="anthropic")
    assert config.base_url == "https://api.anthropic.com"
    assert config.anthropic_version == "2023-06-01"
    assert config.default_max_tokens == 4096
    assert config.api_key is None
    with pytest.raises(ValidationError):
        AnthropicProviderConfig(type="anthropic", base_url="ftp://example.com")
    with pytest.raises(ValidationError):
        AnthropicProviderConfig(type="anthropic", default_max_tokens=0)
    with pytest.raises(ValidationError):
        AnthropicProviderConfig.model_validate({"type": "anthropic", "api_kye": "typo"})
    assert ANTHROPIC_KEY not in repr(
        AnthropicProviderConfig(type="anthropic", api_key=ANTHROPIC_KEY)
    )


def test_registered_under_its_type() -> None:
    assert PROVIDER_TYPES["anthropic"] is AnthropicProvider
    assert AnthropicProvider.config_model is AnthropicProviderConfig


# --- request translation ----------------------------------------------------------


def test_minimal_request() -> None:
    assert translate(model="m", messages=[user("hi")]) == {
        "model": "claude-x",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [text_block("hi")]}],
    }
    streaming = to_anthropic_request(
        {"messages": [user("hi")]}, model="c", default_max_tokens=7, stream=True
    )
    assert streaming["stream"] is True
    assert streaming["max_tokens"] == 7


def test_system_and_developer_messages_go_to_the_top_level() -> None:
    out = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            user("hi"),
            {"role": "developer", "content": [text_block("Answer in French.")]},
            user("again"),
        ]
    )
    assert out["system"] == "Be brief.\n\nAnswer in French."
    assert out["messages"] == [{"role": "user", "content": [text_block("hi"), text_block("again")]}]


def test_consecutive_turns_of_one_role_are_merged() -> None:
    out = translate(
        messages=[
            user("one"),
            user("two"),
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": [text_block("four")]},
            user("five"),
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": [text_block("one"), text_block("two")]},
        {"role": "assistant", "content": [text_block("three"), text_block("four")]},
        {"role": "user", "content": [text_block("five")]},
    ]


def test_empty_messages_are_left_out() -> None:
    out = translate(messages=[user("a"), {"role": "assistant", "content": ""}, user("b")])
    assert out["messages"] == [{"role": "user", "content": [text_block("a"), text_block("b")]}]


def test_images() -> None:
    parts = [
        text_block("what is this?"),
        {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    out = translate(messages=[{"role": "user", "content": parts}])
    assert out["messages"][0]["content"] == [
        text_block("what is this?"),
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "url", ["data:image/png,notbase64", "data:;base64,AAAA", "ftp://example.com/a.png"]
)
def test_unusable_image_urls_are_refused(url: str) -> None:
    part = {"type": "image_url", "image_url": {"url": url}}
    with pytest.raises(InvalidRequestError) as info:
        translate(messages=[{"role": "user", "content": [part]}])
    assert info.value.status_code == 400
    assert info.value.param == "messages"


def test_unsupported_content_and_roles_are_refused() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(InvalidRequestError, match="input_audio"):
        translate(messages=[{"role": "user", "content": [audio]}])
    with pytest.raises(InvalidRequestError, match="function"):
        translate(messages=[{"role": "function", "name": "f", "content": "x"}])
    with pytest.raises(InvalidRequestError, match="n must be 1"):
        translate(messages=[user("x")], n=2)


def test_tools_and_tool_choice() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    out = translate(messages=[user("x")], tools=[WEATHER_TOOL, bare], tool_choice="required")
    assert out["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "description": "Current weather in a city",
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert out["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
        (None, None),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: Any) -> None:
    out = translate(messages=[user("x")], tools=[WEATHER_TOOL], tool_choice=choice)
    assert out.get("tool_choice") == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use() -> None:
    out = translate(messages=[user("x")], tools=[WEATHER_TOOL], parallel_tool_calls=False)
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_tool_choice_without_tools_and_bad_tools() -> None:
    assert "tool_choice" not in translate(messages=[user("x")], tool_choice="auto")
    with pytest.raises(InvalidRequestError) as info:
        translate(messages=[user("x")], tools=[{"type": "code_interpreter"}])
    assert info.value.param == "tools"
    with pytest.raises(InvalidRequestError) as info:
        translate(messages=[user("x")], tools=[WEATHER_TOOL], tool_choice="sometimes")
    assert info.value.param == "tool_choice"


def test_tool_calls_and_tool_results() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    call2 = {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}
    out = translate(
        messages=[
            user("weather?"),
            {"role": "assistant", "content": "Checking.", "tool_calls": [call, call2]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [text_block("noon")]},
            user("thanks"),
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": [text_block("weather?")]},
        {
            "role": "assistant",
            "content": [
                text_block("Checking."),
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
                text_block("thanks"),
            ],
        },
    ]


def test_tool_results_come_first_in_a_user_turn() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    out = translate(
        messages=[
            {"role": "assistant", "content": None, "tool_calls": [call]},
            user("also this"),
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ]
    )
    assert [b["type"] for b in out["messages"][1]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_bad_tool_call_arguments_are_refused(arguments: str) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    with pytest.raises(InvalidRequestError, match="arguments"):
        translate(messages=[{"role": "assistant", "tool_calls": [call]}])


def test_sampling_stop_user_and_max_tokens() -> None:
    out = translate(
        messages=[user("x")],
        temperature=0.2,
        top_p=0.9,
        stop="END",
        user="user-42",
        max_tokens=100,
    )
    assert out["temperature"] == 0.2
    assert out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "user-42"}
    assert out["max_tokens"] == 100
    both = translate(
        messages=[user("x")], stop=["a", "b"], max_tokens=100, max_completion_tokens=50
    )
    assert both["stop_sequences"] == ["a", "b"]
    assert both["max_tokens"] == 50


def test_unknown_and_unsupported_params_are_dropped() -> None:
    out = translate(
        model="m",
        messages=[user("x")],
        logit_bias={"1": 2},
        foo_custom=True,
        response_format={"type": "json_object"},
        seed=3,
        frequency_penalty=0.5,
        stream_options={"include_usage": True},
        n=1,
        temperature=None,
    )
    assert set(out) == {"model", "max_tokens", "messages"}


# --- requests over the wire ---------------------------------------------------------


async def test_full_request_is_accepted_upstream(
    provider: AnthropicProvider, up: FakeUpstream
) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    text_block("look"),
                    {"type": "image_url", "image_url": {"url": PNG_URL}},
                ],
            },
            user("and tell me the weather"),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stop": "END",
        "max_completion_tokens": 64,
        "temperature": 0.5,
        "user": "u1",
        "logit_bias": {"1": 1},
    }
    completion = await provider.complete(make_call("echo-model", **body))
    assert completion.usage is not None  # the upstream accepted it
    [(path, headers, sent)] = up.requests
    assert path == "/v1/messages"
    assert headers["x-api-key"] == ANTHROPIC_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    assert sent == to_anthropic_request(
        make_call("echo-model", **body).body,
        model="echo-model",
        default_max_tokens=4096,
        stream=False,
    )
    assert sent["system"] == "Be brief."
    assert [t["role"] for t in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][0]["content"][1]["source"]["type"] == "base64"
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert sent["stop_sequences"] == ["END"]
    assert sent["max_tokens"] == 64
    assert sent["metadata"] == {"user_id": "u1"}
    assert "logit_bias" not in sent


async def test_default_max_tokens_and_version_come_from_config(up: FakeUpstream) -> None:
    provider = make_anthropic(
        up.base_url + "/", default_max_tokens=33, anthropic_version="2099-01-01"
    )
    async with started(provider):
        await provider.complete(make_call("echo-model"))
    path, headers, sent = up.requests[-1]
    assert path == "/v1/messages"
    assert sent["max_tokens"] == 33
    assert headers["anthropic-version"] == "2099-01-01"


async def test_invalid_request_is_refused_before_calling_upstream(
    provider: AnthropicProvider, up: FakeUpstream
) -> None:
    bad = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
    with pytest.raises(InvalidRequestError):
        await provider.complete(make_call("echo-model", messages=bad))
    with pytest.raises(InvalidRequestError):
        await provider.stream(make_call("echo-model", messages=bad, stream=True))
    assert up.requests == []


# --- replies ------------------------------------------------------------------------


async def test_max_tokens_stop_is_length(provider: AnthropicProvider) -> None:
    completion = await provider.complete(make_call("echo-model", max_tokens=2))
    choice = orjson.loads(completion.body)["choices"][0]
    assert choice["message"]["content"] == "echo: hello"
    assert choice["finish_reason"] == "length"
    assert completion.usage == Usage(prompt_tokens=10, completion_tokens=2)


async def test_complete_text_and_tool_call(provider: AnthropicProvider) -> None:
    completion = await provider.complete(make_call("tool-call-text", tools=[WEATHER_TOOL]))
    message = orjson.loads(completion.body)["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather"]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_stop_reason_mapping(stop_reason: str | None, finish: str) -> None:
    message = {
        "id": "msg_1",
        "model": "c",
        "content": [text_block("a"), text_block("b")],
        "stop_reason": stop_reason,
    }
    data, usage = to_openai_completion(message, make_call("c"))
    assert data["choices"][0]["finish_reason"] == finish
    assert data["choices"][0]["message"]["content"] == "ab"
    assert usage is None
    assert "usage" not in data


def test_cached_prompt_tokens_count_as_prompt_tokens() -> None:
    usage = {
        "input_tokens": 5,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 7,
    }
    data, parsed = to_openai_completion({"content": [], "usage": usage}, make_call("c"))
    assert parsed == Usage(prompt_tokens=1105, completion_tokens=7)
    assert data["usage"]["total_tokens"] == 1112
    assert data["choices"][0]["message"]["content"] == ""
    assert data["model"] == "c"  # falls back to the upstream model asked for


def test_unexpected_reply_shape_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="unexpected reply"):
        to_openai_completion({"type": "message"}, make_call("c"))


# --- streaming ----------------------------------------------------------------------


async def test_stream_length_finish(provider: AnthropicProvider) -> None:
    stream = await provider.stream(make_call("echo-model", stream=True, max_tokens=2))
    chunks = await read_chunks(stream)
    assert content_of(chunks) == ["echo:", " hello"]
    assert stream.stats.finish_reason == "length"
    assert stream.stats.usage == Usage(prompt_tokens=10, completion_tokens=2)


async def test_stream_tool_call_after_text_is_tool_index_zero(
    provider: AnthropicProvider,
) -> None:
    stream = await provider.stream(make_call("tool-call-text", stream=True, tools=[WEATHER_TOOL]))
    chunks = await read_chunks(stream)
    assert "".join(content_of(chunks)) == "Let me check."
    calls = [d["tool_calls"][0] for d in deltas(chunks) if "tool_calls" in d]
    assert {c["index"] for c in calls} == {0}  # Anthropic's block index was 1
    first_tool = next(i for i, d in enumerate(deltas(chunks)) if "tool_calls" in d)
    last_text = max(i for i, d in enumerate(deltas(chunks)) if d.get("content"))
    assert last_text < first_tool


async def test_stream_error_event_raises(provider: AnthropicProvider) -> None:
    stream = await provider.stream(make_call("stream-error", stream=True))
    first = await stream.chunks.__anext__()
    assert orjson.loads(first[len(b"data: ") :])["choices"][0]["delta"]["role"] == "assistant"
    with pytest.raises(UpstreamError, match="Overloaded"):
        await stream.chunks.__anext__()


async def test_malformed_stream_event_raises(provider: AnthropicProvider) -> None:
    stream = await provider.stream(make_call("bad-json", stream=True))
    with pytest.raises(UpstreamError, match="malformed"):
        await stream.chunks.__anext__()
