"""``POST /v1/responses``: the translation both ways, then the official OpenAI SDK against a
real gateway on loopback in front of the fake upstream (routing, fallback, streaming,
tools, errors, the log line and metrics)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pydantic
import pytest

from router_proxy.cli import main
from router_proxy.errors import InvalidRequestError
from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.translate.responses_output import echo_of, from_chat_completion
from router_proxy.translate.responses_request import to_chat
from router_proxy.translate.responses_stream import ResponsesStream
from tests.conftest import GatewayFactory
from tests.support.logs import log_line
from tests.support.upstream import TOOL_ARGUMENTS, TOOL_NAME, FakeUpstream

RESPONSES = "/v1/responses"
DEFAULT = str(Path(__file__).parent.parent / "configs" / "default.yaml")
POLICY = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1", api_key: "${OPENAI_KEY}"}
  ant: {type: anthropic, base_url: "${UPSTREAM}", api_key: "${ANTHROPIC_KEY}"}
  mock: {type: mock}
models:
  echo: {provider: up, upstream_model: echo}
  broken: {provider: up, upstream_model: fail-500}
  tools: {provider: up, upstream_model: tool-call}
  cut: {provider: up, upstream_model: cut-stream}
  limited: {provider: up, upstream_model: fail-429}
  claude: {provider: ant, upstream_model: echo}
  claude-tools: {provider: ant, upstream_model: tool-call}
  local: {provider: mock}
signals:
  - {name: code, type: keyword, any: [python]}
  - {name: legal, type: keyword, any: [contract]}
decisions:
  - {name: coding, priority: 10, when: code, route: {candidates: [broken, echo]}}
  - {name: legal, priority: 5, when: legal, route: {candidates: [claude]}}
  - {name: default, when: true, route: {candidates: [echo]}}
"""
WEATHER_TOOL = {
    "type": "function",
    "name": TOOL_NAME,
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


# --- the translation, without HTTP -------------------------------------------------------


def test_a_conversation_becomes_chat_messages() -> None:
    translated = to_chat(
        {
            "model": "auto",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use metric units."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Weather in Paris?"},
                        {"type": "input_image", "image_url": "https://x/p.png", "detail": "low"},
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "id": "msg_1",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
                },
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "21C"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "sunny"}],
                },
            ],
        },
        max_messages=64,
    )
    call = {"type": "function", "function": {"name": "w", "arguments": "{}"}}
    assert translated.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use metric units."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "https://x/p.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",  # text parts outside user turns: one string
            "tool_calls": [{"id": "c1", **call}, {"id": "c2", **call}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "21C"},
        {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
    ]
    assert translated.chat.messages[0].role == "system"


def test_parameters_become_their_chat_equivalents() -> None:
    body = to_chat(
        {
            "model": "coding",
            "input": "hi",
            "tools": [WEATHER_TOOL | {"strict": True}],
            "tool_choice": {"type": "function", "name": TOOL_NAME},
            "parallel_tool_calls": False,
            "max_output_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
            "stream": True,
            "user": "u-1",
            "reasoning": {"effort": "low", "summary": "auto"},
            "metadata": {"team": "a"},  # echoed, not sent
            "store": True,  # accepted, nothing stored
            "truncation": "auto",  # dropped
            "some_future_parameter": 1,  # dropped
        },
        max_messages=64,
    ).body
    function = {k: v for k, v in WEATHER_TOOL.items() if k != "type"} | {"strict": True}
    assert body == {
        "model": "coding",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
        "reasoning_effort": "low",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
        "tools": [{"type": "function", "function": function}],
        "parallel_tool_calls": False,
        "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}},
    }
    json_object = {"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}
    assert to_chat(json_object, 64).body["response_format"] == {"type": "json_object"}
    plain = {"model": "m", "input": "x", "text": {"format": {"type": "text"}}}
    assert "response_format" not in to_chat(plain, 64).body


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "auto"}, "input", "Missing required parameter"),
        ({"model": "auto", "input": 42}, "input", "a string or a list"),
        ({"model": "auto", "input": []}, "input", "empty"),
        ({"input": "x"}, "model", "Missing required parameter"),
        ({"model": "auto", "input": [{"role": "user", "content": 5}]}, "input[0].content", ""),
        ({"model": "auto", "input": [{"role": "bot", "content": "x"}]}, "input[0].role", ""),
        ({"model": "auto", "input": ["x"]}, "input[0]", "type"),
        ({"model": "auto", "input": [{"type": "reasoning"}]}, "input[0].type", "'reasoning'"),
        (
            {"model": "auto", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            "input[0].content[0].type",
            "'input_file'",
        ),
        (
            {"model": "auto", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
            "Missing",
        ),
        (
            {"model": "auto", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
            "Missing",
        ),
        ({"model": "auto", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type", ""),
        (
            {"model": "auto", "input": "x", "tool_choice": {"type": "file_search"}},
            "tool_choice.type",
            "",
        ),
        (
            {
                "model": "auto",
                "input": "x",
                "text": {"format": {"type": "json_schema", "schema": {}}},
            },
            "text.format.name",
            "Missing",
        ),
        ({"model": "auto", "input": "x", "temperature": "1"}, "temperature", ""),
        ({"model": "auto", "input": "x", "max_output_tokens": 0}, "max_output_tokens", ""),
        ({"model": "auto", "input": "x", "stream": 1}, "stream", ""),
        ({"model": "auto", "input": "x", "metadata": {"a": 1}}, "metadata.a", ""),
    ],
)
def test_errors_name_the_responses_field(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_chat(body, max_messages=64)
    assert caught.value.param == param
    assert f"'{param}'" in caught.value.message
    assert words in caught.value.message
    assert "messages" not in caught.value.message  # never the chat field it becomes


def test_built_in_tools_are_refused_in_words() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_chat({"model": "a", "input": "x", "tools": [WEATHER_TOOL, {"type": "web_search"}]}, 8)
    assert caught.value.param == "tools[1].type"
    assert "'web_search' is not supported" in caught.value.message
    assert "function tools only" in caught.value.message


@pytest.mark.parametrize(
    ("field", "value"),
    [("previous_response_id", "resp_1"), ("conversation", "conv_1"), ("prompt", {"id": "p"})],
)
def test_stored_state_is_refused(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_chat({"model": "auto", "input": "x", field: value}, 8)
    assert caught.value.param == field
    assert caught.value.code == "unsupported_parameter"
    assert "input" in caught.value.message  # says what to send instead


def test_too_many_items_are_refused_before_validation() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_chat({"model": "auto", "input": [{"role": "user", "content": "x"}] * 9}, 8)
    assert (caught.value.param, caught.value.code) == ("input", "too_many_messages")


def _chat_completion(message: dict[str, Any], finish: str, **usage: Any) -> bytes:
    choice = {"index": 0, "message": message, "finish_reason": finish}
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10} | usage
    body = {"id": "c", "object": "chat.completion", "created": 5, "model": "up-model"}
    return orjson.dumps(body | {"choices": [choice], "usage": usage})


def _echo(**request: Any) -> dict[str, Any]:
    return echo_of(to_chat({"model": "auto", "input": "x", **request}, 8).request)


def test_a_text_answer_becomes_a_response() -> None:
    details = {"prompt_tokens_details": {"cached_tokens": 4}}
    body = _chat_completion({"role": "assistant", "content": "Hello."}, "stop", **details)
    response = from_chat_completion(body, _echo(instructions="Hi", temperature=0.5), "auto")
    assert response["id"].startswith("resp_")
    assert (response["object"], response["status"], response["model"]) == (
        "response",
        "completed",
        "up-model",
    )
    assert response["created_at"] == 5
    (message,) = response["output"]
    assert message["type"] == "message"
    assert message["id"].startswith("msg_")
    assert message["content"] == [
        {"type": "output_text", "text": "Hello.", "annotations": [], "logprobs": []}
    ]
    assert response["usage"] == {
        "input_tokens": 7,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10,
    }
    assert (response["instructions"], response["temperature"]) == ("Hi", 0.5)
    assert response["tool_choice"] == "auto"
    assert response["tools"] == []
    assert response["store"] is False


def test_a_cut_answer_is_incomplete() -> None:
    body = _chat_completion({"role": "assistant", "content": "Hel"}, "length")
    response = from_chat_completion(body, _echo(max_output_tokens=1), "auto")
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["max_output_tokens"] == 1


def test_tool_calls_become_function_call_items() -> None:
    call = {"id": "call_9", "type": "function", "function": {"name": "w", "arguments": "{}"}}
    body = _chat_completion(
        {"role": "assistant", "content": "", "tool_calls": [call]}, "tool_calls"
    )
    response = from_chat_completion(body, _echo(tools=[WEATHER_TOOL]), "auto")
    (item,) = response["output"]  # no empty message beside the call
    assert item["type"] == "function_call"
    assert item["id"].startswith("fc_")
    assert (item["call_id"], item["name"], item["arguments"], item["status"]) == (
        "call_9",
        "w",
        "{}",
        "completed",
    )
    assert response["tools"][0]["name"] == TOOL_NAME


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    payload = {"id": "c", "object": "chat.completion.chunk", "model": "up-model"}
    return b"data: " + orjson.dumps(payload | {"choices": choices} | extra) + b"\n\n"


def _events(pieces: list[bytes], **request: Any) -> list[dict[str, Any]]:
    stream = ResponsesStream(_echo(**request), "auto")
    out = b"".join(stream.feed(piece) for piece in pieces) + stream.close()
    events = []
    for block in out.decode().split("\n\n")[:-1]:
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == "event: " + event["type"]
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_a_text_stream_becomes_typed_events() -> None:
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hello"}),
        _chunk({"content": " world"}),
        _chunk({}, "stop"),
        _chunk(usage={"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}),
        b"data: [DONE]\n\n",
    ]
    # Events arrive several to a piece, or cut anywhere, and with CRLF line ends.
    whole = b"".join(chunks)
    for pieces in ([whole], chunks, [whole[:17], whole[17:90], whole[90:]]):
        for crlf in (False, True):
            feed = [p.replace(b"\n", b"\r\n") for p in pieces] if crlf else pieces
            events = _events(feed)
            assert [e["type"] for e in events] == [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[6]["text"] == "Hello world"
    final = events[-1]["response"]
    assert final["id"] == events[0]["response"]["id"]
    assert final["output"][0]["content"][0]["text"] == "Hello world"
    assert final["usage"]["input_tokens"] == 7
    assert final["usage"]["total_tokens"] == 9


def test_a_tool_call_stream_becomes_function_call_events() -> None:
    head = {"index": 0, "id": "call_1", "type": "function"}
    events = _events(
        [
            _chunk({"role": "assistant", "content": "Let me check."}),
            _chunk({"tool_calls": [head | {"function": {"name": "w", "arguments": ""}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            _chunk({}, "tool_calls"),
            b"data: [DONE]\n\n",
        ]
    )
    kinds = [e["type"] for e in events]
    assert kinds[kinds.index("response.output_item.done") + 1 :] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = events[-3]
    assert done["arguments"] == '{"city":"Paris"}'
    message, call = events[-1]["response"]["output"]
    assert message["content"][0]["text"] == "Let me check."
    assert (call["call_id"], call["name"]) == ("call_1", "w")
    assert call["arguments"] == '{"city":"Paris"}'
    assert call["status"] == "completed"


def test_tool_calls_without_an_index_are_told_apart_by_their_id() -> None:
    def call(call_id: str | None, arguments: str, name: str | None = None) -> bytes:
        head: dict[str, Any] = {"function": {"arguments": arguments}}
        if call_id is not None:
            head |= {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            head["function"]["arguments"] = arguments
        return _chunk({"tool_calls": [head]})

    events = _events(
        [
            call("a", "{}", "f"),
            call("b", '{"x":', "g"),
            call(None, "1}"),
            _chunk({}, "tool_calls"),
            b"data: [DONE]\n\n",
        ]
    )
    first, second = events[-1]["response"]["output"]
    assert (first["call_id"], first["name"], first["arguments"]) == ("a", "f", "{}")
    assert (second["call_id"], second["name"], second["arguments"]) == ("b", "g", '{"x":1}')


def test_a_stream_cut_at_max_output_tokens_is_incomplete() -> None:
    events = _events([_chunk({"content": "Hel"}), _chunk({}, "length"), b"data: [DONE]\n\n"])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_failure_after_the_first_byte_is_response_failed() -> None:
    error = {"message": "model 'x' failed", "type": "upstream_error", "param": None, "code": "x"}
    events = _events(
        [_chunk({"content": "Hel"}), b"data: " + orjson.dumps({"error": error}) + b"\n\n"]
    )
    failed = events[-1]
    assert failed["type"] == "response.failed"
    assert failed["error"] == error  # the official SDKs raise APIError on a top-level error
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "model 'x' failed"}
    assert failed["response"]["output"][0]["content"][0]["text"] == "Hel"
    # A stream that just stops is not a success either.
    assert _events([_chunk({"content": "Hel"})])[-1]["type"] == "response.failed"


# --- end to end: the official SDK, a real gateway, the fake upstream -----------------------


@pytest.fixture(scope="module")
def gateway(make_gateway: GatewayFactory) -> str:
    return make_gateway(POLICY)


@pytest.fixture
def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def http(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=10) as client:
        yield client


def _last_chat_body(upstream: FakeUpstream) -> dict[str, Any]:
    path, _, body = upstream.requests[-1]
    assert path in ("/v1/chat/completions", "/v1/messages")
    assert isinstance(body, dict)
    return body


def test_sdk_create(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    raw = client.responses.with_raw_response.create(model="auto", input="hello there")
    response = raw.parse()
    assert response.output_text == "echo: hello there"
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 3)
    assert response.usage.total_tokens == 13
    assert raw.headers["x-router-decision"] == "default"
    assert raw.headers["x-router-model"] == "echo"
    assert _last_chat_body(upstream)["messages"] == [{"role": "user", "content": "hello there"}]


def test_sdk_create_with_instructions_and_settings(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    response = client.responses.create(
        model="echo",
        instructions="Answer in French.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "one two three"}]}],
        temperature=0.3,
        max_output_tokens=3,
        metadata={"ticket": "42"},
        store=True,
    )
    sent = _last_chat_body(upstream)
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert (sent["temperature"], sent["max_tokens"]) == (0.3, 3)
    assert "metadata" not in sent
    assert "store" not in sent
    assert response.instructions == "Answer in French."
    assert response.metadata == {"ticket": "42"}
    # The echo cut to 3 words: incomplete, as OpenAI reports max_output_tokens.
    assert response.output_text == "echo: one two"
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("model", ["tools", "claude-tools"])
def test_sdk_function_tools(client: openai.OpenAI, upstream: FakeUpstream, model: str) -> None:
    response = client.responses.create(
        model=model, input="Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="auto"
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == TOOL_NAME
    assert json.loads(calls[0].arguments) == TOOL_ARGUMENTS
    assert response.tools[0].type == "function"
    if model == "tools":  # the OpenAI-format upstream got chat's nested tools
        function = {k: v for k, v in WEATHER_TOOL.items() if k != "type"}
        assert _last_chat_body(upstream)["tools"] == [{"type": "function", "function": function}]

    # The call's output goes back in the next request's input, as OpenAI's docs show.
    follow = client.responses.create(
        model="echo",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *[item.model_dump(exclude_none=True) for item in response.output],
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "21C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert follow.output_text == "echo: Weather in Paris?"
    messages = _last_chat_body(upstream)["messages"]
    assert messages[1]["tool_calls"][0]["id"] == calls[0].call_id
    assert messages[2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "21C"}


@pytest.mark.parametrize("model", ["echo", "claude"])
def test_sdk_stream(client: openai.OpenAI, upstream: FakeUpstream, model: str) -> None:
    deltas = []
    with client.responses.stream(model=model, input="stream me please") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: stream me please"
    assert len(deltas) == 4
    assert final.output_text == "echo: stream me please"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 4)
    assert _last_chat_body(upstream).get("stream") is True


def test_sdk_stream_of_a_tool_call(client: openai.OpenAI) -> None:
    pieces = []
    with client.responses.stream(model="tools", input="x", tools=[WEATHER_TOOL]) as stream:
        for event in stream:
            if event.type == "response.function_call_arguments.delta":
                pieces.append(event.delta)
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call"
    assert "".join(pieces) == call.arguments
    assert json.loads(call.arguments) == TOOL_ARGUMENTS


def test_sdk_raw_stream_events(client: openai.OpenAI, http: httpx.Client) -> None:
    events = list(client.responses.create(model="echo", input="a b", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with http.stream("POST", RESPONSES, json={"model": "echo", "input": "a", "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    assert "[DONE]" not in text
    assert text.startswith("event: response.created\ndata: {")


def test_json_schema_format_is_sent_as_response_format(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    response = client.responses.create(
        model="echo",
        input="give json",
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
    )
    assert _last_chat_body(upstream)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    assert response.text is not None
    assert response.text.format is not None
    assert response.text.format.type == "json_schema"


class City(pydantic.BaseModel):
    name: str
    population: int


def test_sdk_parse_with_a_pydantic_text_format(client: openai.OpenAI) -> None:
    """The mock model answers JSON for a schema, so the SDK's structured outputs work."""
    parsed = client.responses.parse(model="local", input="Paris", text_format=City)
    assert parsed.output_parsed == City(name="Paris", population=0)
    with client.responses.stream(model="local", input="Paris", text_format=City) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == City(name="Paris", population=0)


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_before_the_first_byte(http: httpx.Client, stream: bool) -> None:
    body = {"model": "auto", "input": "a python question", "stream": stream}
    with http.stream("POST", RESPONSES, json=body) as response:
        assert response.status_code == 200
        text = response.read().decode()
    assert response.headers["x-router-decision"] == "coding"  # the keyword in `input`
    assert response.headers["x-router-model"] == "echo"  # broken answered 500 first
    assert response.headers["x-router-attempts"] == "2"
    assert "echo: a python question" in text.replace('","delta":"', "")


def test_a_failure_after_the_first_byte_raises_in_the_sdk(client: openai.OpenAI) -> None:
    deltas = []

    def read() -> None:
        with client.responses.stream(model="cut", input="one two three four") as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)

    with pytest.raises(openai.APIError) as caught:
        read()
    assert deltas  # it had started
    assert "cut" in caught.value.message
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "upstream_error"


def test_rate_limit_error_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="limited", input="x")
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "rate_limit_error"


def test_client_key_is_required_where_configured(make_gateway: GatewayFactory) -> None:
    keyed = make_gateway("server:\n  api_keys: [right-key]\n" + POLICY)
    wrong = openai.OpenAI(base_url=keyed + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.responses.create(model="auto", input="x")
    assert caught.value.status_code == 401
    right = openai.OpenAI(base_url=keyed + "/v1", api_key="right-key", max_retries=0)
    assert right.responses.create(model="auto", input="x").output_text == "echo: x"


def test_previous_response_id_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="auto", input="x", previous_response_id="resp_123")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "previous_response_id"
    assert caught.value.body["type"] == "invalid_request_error"
    assert "send the whole conversation" in caught.value.body["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "auto"}, "input"),
        ({"model": "auto", "input": 42}, "input"),
        (
            {"model": "auto", "input": "x", "tools": [{"type": "web_search_preview"}]},
            "tools[0].type",
        ),
        ({"model": "auto", "input": "x", "background": True}, "background"),
        ({"model": "auto", "input": [{"role": "user", "content": None}]}, "input[0].content"),
        ({"model": "nope", "input": "x"}, None),  # unknown model: 404
    ],
)
def test_bad_bodies_are_openai_errors_never_500(
    http: httpx.Client, body: dict[str, Any], param: str | None
) -> None:
    response = http.post(RESPONSES, json=body)
    assert response.status_code == (404 if param is None else 400), response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param
        assert error["type"] == "invalid_request_error"
    for content in (b"{not json", b"", b"[1]"):
        assert http.post(RESPONSES, content=content).status_code == 400


def test_log_line_and_metrics_count_the_surface(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    line = 'router_requests_total{decision="legal",model="claude",status="200"}'

    def count() -> float:
        for row in http.get("/metrics").text.splitlines():
            if row.startswith(line):
                return float(row.split()[-1])
        return 0.0

    before = count()
    body = {
        "model": "auto",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "a contract"}]}],
    }
    response = http.post(RESPONSES, json=body)
    assert response.status_code == 200, response.text
    # The routing signals read the Responses input: the keyword picked its decision.
    assert response.headers["x-router-decision"] == "legal"
    assert response.headers["x-router-model"] == "claude"
    assert response.json()["output"][0]["content"][0]["text"] == "echo: a contract"
    logged = log_line(caplog, response.headers["x-router-request-id"])
    assert logged["surface"] == "responses"
    assert logged["path"] == RESPONSES
    assert logged["decision"] == "legal"
    assert count() == before + 1


def test_dry_run_reads_a_responses_body(http: httpx.Client) -> None:
    plan = http.post("/v1/route", json={"model": "auto", "input": "some python code"})
    assert plan.status_code == 200, plan.text
    assert plan.json()["decision"] == "coding"
    chat = {"model": "auto", "messages": [{"role": "user", "content": "a contract"}]}
    assert http.post("/v1/route", json=chat).json()["decision"] == "legal"
    bad = http.post("/v1/route", json={"model": "auto", "input": 3})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "input"


def test_documented_in_openapi(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    operation = spec["paths"][RESPONSES]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ResponsesRequest"}
    request = spec["components"]["schemas"]["ResponsesRequest"]
    assert set(request["required"]) == {"model", "input"}
    assert request["additionalProperties"] is True  # unknown parameters are dropped
    assert {"text/event-stream", "application/json"} <= set(
        operation["responses"]["200"]["content"]
    )
    route = spec["paths"]["/v1/route"]["post"]["requestBody"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/ResponsesRequest"} in route["schema"]["anyOf"]


def test_explain_reads_a_responses_body(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = tmp_path / "body.json"
    text = {"type": "input_text", "text": "Fix this Python stack trace"}
    body.write_text(json.dumps({"model": "auto", "input": [{"role": "user", "content": [text]}]}))
    assert main(["explain", "--config", DEFAULT, "--json", "--body", str(body)]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "coding"
    body.write_text(json.dumps({"model": "auto", "input": 5}))
    assert main(["explain", "--config", DEFAULT, "--body", str(body)]) == 1
    assert "'input'" in capsys.readouterr().err
