"""The mock provider answers like a model: ``n`` choices, ``max_tokens`` cuts with
finish_reason "length", tool calls when ``tool_choice`` asks, JSON for ``response_format``.

Unit tests call the provider; the end-to-end ones drive a real gateway on the default
config (configs/default.yaml) with the official openai SDK and its helpers.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import jsonschema
import openai
import orjson
import pydantic
import pytest
from openai.types.chat import ChatCompletionMessageParam

from router_proxy.errors import InvalidRequestError
from router_proxy.protocol import Usage
from router_proxy.providers.mock import MockProvider, MockProviderConfig
from router_proxy.providers.mock_content import estimate_tokens, schema_value
from tests.conftest import GatewayFactory
from tests.support.provider_helpers import (
    WEATHER_TOOL,
    anyio_backend_fixture,  # noqa: F401
    content_of,
    deltas,
    make_call,
    read_chunks,
)

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
REPLY = "[mock-x] You said: hello there"  # the default template for make_call's prompt
PROMPT_TOKENS = estimate_tokens("hello there")

BOOKING = {
    "type": "function",
    "function": {
        "name": "book_table",
        "parameters": {
            "type": "object",
            "properties": {
                "guest": {"type": "string"},
                "size": {"type": "integer", "minimum": 1},
                "price": {"type": "number"},
                "vip": {"type": "boolean"},
                "notes": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": "object"},
                "slot": {"type": "string", "enum": ["lunch", "dinner"]},
                "unasked": {"type": "string"},  # not required: left out
            },
            "required": ["guest", "size", "price", "vip", "notes", "extra", "slot"],
        },
    },
}
BOOKING_ARGS = {
    "guest": "hello there",
    "size": 1,
    "price": 0,
    "vip": False,
    "notes": [],
    "extra": {},
    "slot": "lunch",
}


@pytest.fixture
def mock() -> MockProvider:
    return MockProvider("mock", MockProviderConfig(type="mock"))


async def complete(provider: MockProvider, **body: Any) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((await provider.complete(make_call("mock-x", **body))).body)
    return data


# --- unit: the provider -------------------------------------------------------------


@pytest.mark.anyio
async def test_plain_reply_keeps_template_usage_and_determinism(mock: MockProvider) -> None:
    completion = await mock.complete(make_call("mock-x"))
    data = orjson.loads(completion.body)
    assert data["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}
    ]
    assert completion.usage == Usage(
        prompt_tokens=PROMPT_TOKENS, completion_tokens=estimate_tokens(REPLY)
    )
    again = orjson.loads((await mock.complete(make_call("mock-x"))).body)
    assert again["choices"] == data["choices"]


@pytest.mark.anyio
async def test_n_gives_n_choices_and_counts_them_all(mock: MockProvider) -> None:
    completion = await mock.complete(make_call("mock-x", n=3))
    data = orjson.loads(completion.body)
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in data["choices"]} == {REPLY}
    assert data["usage"]["completion_tokens"] == 3 * estimate_tokens(REPLY)
    assert data["usage"]["total_tokens"] == PROMPT_TOKENS + 3 * estimate_tokens(REPLY)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3 * estimate_tokens(REPLY)


@pytest.mark.anyio
async def test_stream_with_n_tags_every_chunk_with_its_choice(mock: MockProvider) -> None:
    call = make_call("mock-x", n=2, stream=True, stream_options={"include_usage": True})
    stream = await mock.stream(call)
    chunks = await read_chunks(stream)
    *choice_chunks, usage_chunk = chunks
    for index in (0, 1):
        mine = [c["choices"][0] for c in choice_chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(c["delta"].get("content", "") for c in mine) == REPLY
        assert [c["finish_reason"] for c in mine][-1] == "stop"
        assert [c["finish_reason"] for c in mine].count("stop") == 1
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 2 * estimate_tokens(REPLY)
    assert stream.stats.usage == Usage(
        prompt_tokens=PROMPT_TOKENS, completion_tokens=2 * estimate_tokens(REPLY)
    )
    assert stream.stats.finish_reason == "stop"


@pytest.mark.anyio
@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_cuts_the_reply_with_finish_reason_length(
    mock: MockProvider, param: str
) -> None:
    completion = await mock.complete(make_call("mock-x", **{param: 3}))
    [choice] = orjson.loads(completion.body)["choices"]
    assert choice["message"]["content"] == REPLY[:12] == "[mock-x] You"
    assert choice["finish_reason"] == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    # A limit the reply fits in changes nothing.
    fits = estimate_tokens(REPLY)
    [choice] = (await complete(mock, **{param: fits}))["choices"]
    assert (choice["message"]["content"], choice["finish_reason"]) == (REPLY, "stop")


@pytest.mark.anyio
async def test_stream_cut_by_max_tokens_ends_with_length(mock: MockProvider) -> None:
    stream = await mock.stream(make_call("mock-x", max_tokens=3, stream=True))
    chunks = await read_chunks(stream)
    assert "".join(content_of(chunks)) == "[mock-x] You"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"
    assert stream.stats.finish_reason == "length"
    assert stream.stats.usage is not None
    assert stream.stats.usage.completion_tokens == 3


@pytest.mark.anyio
async def test_required_tool_choice_calls_the_first_tool_with_schema_arguments(
    mock: MockProvider,
) -> None:
    completion = await mock.complete(
        make_call("mock-x", tools=[BOOKING, WEATHER_TOOL], tool_choice="required")
    )
    [choice] = orjson.loads(completion.body)["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "book_table"
    arguments = call["function"]["arguments"]
    assert isinstance(arguments, str)
    assert json.loads(arguments) == BOOKING_ARGS
    jsonschema.validate(json.loads(arguments), BOOKING["function"]["parameters"])  # type: ignore[index]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == estimate_tokens(arguments)


@pytest.mark.anyio
async def test_named_tool_choice_calls_that_tool(mock: MockProvider) -> None:
    choice_of = {"type": "function", "function": {"name": "get_weather"}}
    data = await complete(mock, tools=[BOOKING, WEATHER_TOOL], tool_choice=choice_of, n=2)
    calls = [c["message"]["tool_calls"][0] for c in data["choices"]]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{}, {}]  # none required
    assert len({c["id"] for c in calls}) == 2  # each choice's call has its own id


@pytest.mark.anyio
@pytest.mark.parametrize("tool_choice", [None, "auto", "none"])
async def test_tools_without_a_required_choice_get_text(
    mock: MockProvider, tool_choice: str | None
) -> None:
    extra = {} if tool_choice is None else {"tool_choice": tool_choice}
    [choice] = (await complete(mock, tools=[BOOKING], **extra))["choices"]
    assert choice["message"] == {"role": "assistant", "content": REPLY}
    assert choice["finish_reason"] == "stop"


@pytest.mark.anyio
async def test_tool_choice_naming_an_unknown_function_is_a_client_error(
    mock: MockProvider,
) -> None:
    choice_of = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(InvalidRequestError) as info:
        await mock.complete(make_call("mock-x", tools=[BOOKING], tool_choice=choice_of))
    assert info.value.status_code == 400
    assert info.value.param == "tool_choice"
    assert "'nope'" in info.value.message


@pytest.mark.anyio
async def test_stream_tool_call_follows_openai_chunk_shape(mock: MockProvider) -> None:
    call = make_call("mock-x", tools=[BOOKING], tool_choice="required", stream=True)
    stream = await mock.stream(call)
    chunks = await read_chunks(stream)
    calls = [d["tool_calls"][0] for d in deltas(chunks) if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": "call_mock_r1_0",
        "type": "function",
        "function": {"name": "book_table", "arguments": ""},
    }
    assert deltas(chunks)[0]["role"] == "assistant"
    assert len(calls) > 2  # the arguments come in pieces
    assert all(set(c) == {"index", "function"} and c["index"] == 0 for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == BOOKING_ARGS
    assert content_of(chunks) == []
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert stream.stats.finish_reason == "tool_calls"


@pytest.mark.anyio
async def test_tool_call_cut_by_max_tokens_is_a_length_finish(mock: MockProvider) -> None:
    data = await complete(mock, tools=[BOOKING], tool_choice="required", max_tokens=2)
    [choice] = data["choices"]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"guest"'


@pytest.mark.anyio
async def test_json_object_response_format(mock: MockProvider) -> None:
    data = await complete(mock, response_format={"type": "json_object"})
    content = data["choices"][0]["message"]["content"]
    assert json.loads(content) == {"model": "mock-x", "reply": REPLY}
    assert data["usage"]["completion_tokens"] == estimate_tokens(content)


@pytest.mark.anyio
async def test_json_schema_response_format_validates(mock: MockProvider) -> None:
    schema = {
        "type": "object",
        "properties": {
            "answer": {"$ref": "#/$defs/Answer"},
            "kind": {"const": "reply"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "exclusiveMinimum": 5}]},
            "both": {"allOf": [{"$ref": "#/$defs/Answer"}, {"required": ["score"]}]},
            "pair": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
            "short": {"type": "string", "maxLength": 5},
        },
        "required": ["answer", "kind", "maybe", "both", "pair", "short"],
        "$defs": {
            "Answer": {
                "type": "object",
                "properties": {
                    "mood": {"enum": ["calm", "busy"]},
                    "score": {"type": "number", "maximum": -1.5},
                },
                "required": ["mood"],
            }
        },
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    data = await complete(mock, response_format=response_format)
    value = json.loads(data["choices"][0]["message"]["content"])
    jsonschema.validate(value, schema)
    assert value == {
        "answer": {"mood": "calm"},
        "kind": "reply",
        "maybe": 6,
        "both": {"mood": "calm", "score": -1.5},
        "pair": [False, False],
        "short": "hello",
    }


def test_schema_values_stay_small_on_hostile_schemas() -> None:
    cyclic = {"$ref": "#", "type": "object"}
    assert schema_value({"type": "object", "properties": {"a": cyclic}, "required": ["a"]}, "t")
    wide = {"type": "array", "minItems": 10**9, "items": {"type": "array", "minItems": 10**9}}
    assert len(schema_value(wide, "t")) <= 8
    odd = {"properties": [], "required": {"x": 1}, "allOf": [3, {"$ref": "#/nowhere"}]}
    assert schema_value(odd, "t") == {}
    assert schema_value({"type": "integer", "minimum": 2.5}, "t") == 3


@pytest.mark.anyio
async def test_n_beyond_openais_limit_is_capped(mock: MockProvider) -> None:
    # The gateway accepts any n up to 2**31 - 1; the mock answers OpenAI's maximum, 128.
    data = await complete(mock, n=2**31 - 1)
    assert len(data["choices"]) == 128
    assert data["choices"][-1]["index"] == 127


# --- end to end: the openai SDK against the default config ---------------------------


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Verdict(pydantic.BaseModel):
    summary: str
    count: int
    ok: bool
    tags: list[str]
    colour: Colour


class Lookup(pydantic.BaseModel):
    city: str
    days: int


USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def sdk(make_gateway: GatewayFactory) -> openai.OpenAI:
    url = make_gateway(DEFAULT_POLICY.read_text())
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def test_sdk_n_choices_and_length_cut(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=USER, n=2)
    assert raw.headers["x-router-model"] == "small"
    completion = raw.parse()
    assert [c.index for c in completion.choices] == [0, 1]
    assert {c.message.content for c in completion.choices} == {"[mock-small-8b] You said: hello"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2 * estimate_tokens(
        "[mock-small-8b] You said: hello"
    )
    cut = sdk.chat.completions.create(model="small", messages=USER, max_tokens=4)
    assert cut.choices[0].message.content == "[mock-small-8b] "  # 4 tokens: 16 characters
    assert cut.choices[0].finish_reason == "length"
    stream = sdk.chat.completions.create(model="small", messages=USER, max_tokens=4, stream=True)
    chunks = [c for c in stream if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "[mock-small-8b] "
    assert chunks[-1].choices[0].finish_reason == "length"


def test_sdk_streamed_choices_accumulate_per_index(sdk: openai.OpenAI) -> None:
    with sdk.chat.completions.stream(model="small", messages=USER, n=2) as stream:
        final = stream.get_final_completion()
    assert [c.message.content for c in final.choices] == ["[mock-small-8b] You said: hello"] * 2
    assert [c.finish_reason for c in final.choices] == ["stop", "stop"]


def test_sdk_tool_calls_plain_and_streamed(sdk: openai.OpenAI) -> None:
    tools = [openai.pydantic_function_tool(Lookup, name="lookup")]
    completion = sdk.chat.completions.parse(
        model="small", messages=USER, tools=tools, tool_choice="required"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.function.name == "lookup"
    assert call.function.parsed_arguments == Lookup(city="hello", days=0)
    with sdk.chat.completions.stream(
        model="small",
        messages=USER,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "lookup"}},
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert [e.name for e in done] == ["lookup"]
    assert done[0].parsed_arguments == Lookup(city="hello", days=0)
    [streamed] = final.choices[0].message.tool_calls or []
    assert streamed.id.startswith("call_")
    assert json.loads(streamed.function.arguments) == {"city": "hello", "days": 0}
    assert final.choices[0].finish_reason == "tool_calls"


def test_sdk_json_object_and_json_schema_parse(sdk: openai.OpenAI) -> None:
    plain = sdk.chat.completions.create(
        model="large", messages=USER, response_format={"type": "json_object"}
    )
    content = plain.choices[0].message.content or ""
    assert json.loads(content) == {"model": "mock-large", "reply": "[mock-large] You said: hello"}
    parsed = sdk.chat.completions.parse(model="coder", messages=USER, response_format=Verdict)
    assert parsed.choices[0].message.parsed == Verdict(
        summary="hello", count=0, ok=False, tags=[], colour=Colour.RED
    )
    with sdk.chat.completions.stream(
        model="coder",
        messages=USER,
        response_format=Verdict,
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == parsed.choices[0].message.parsed
