"""End to end: the official Anthropic SDK -> gateway (real port) -> the fake upstream, in
OpenAI format (and, for one model, Anthropic's, through the Anthropic provider).

``POST /v1/messages`` goes through the same engine as chat: routing by keyword, fallback
before the first byte, x-router-* headers, the log line; the answers and every error are
in Anthropic's shapes. The mappings themselves: tests/test_translate_messages.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from router_proxy import errors
from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.server.surfaces.messages import anthropic_error
from router_proxy.signals.tokens import shared_counter
from tests.conftest import ANTHROPIC_KEY, UPSTREAM_KEY, GatewayFactory
from tests.support.logs import log_line
from tests.support.upstream import PROMPT_TOKENS, TOOL_ARGUMENTS, TOOL_NAME, FakeUpstream

CLIENT_KEY = "sk-client-messages-42"
POLICY = f"""\
server:
  api_keys: [{CLIENT_KEY}]
providers:
  up: {{type: openai, base_url: "${{UPSTREAM}}/v1", api_key: "${{OPENAI_KEY}}"}}
  ant: {{type: anthropic, base_url: "${{UPSTREAM}}", api_key: "${{ANTHROPIC_KEY}}"}}
models:
  echo: {{provider: up, upstream_model: echo}}
  tools: {{provider: up, upstream_model: tool-call}}
  broken: {{provider: up, upstream_model: fail-500}}
  limited: {{provider: up, upstream_model: fail-429}}
  cut: {{provider: up, upstream_model: cut-stream}}
  stream-error: {{provider: up, upstream_model: stream-error}}
  claude-echo: {{provider: ant, upstream_model: echo}}
  claude-tools: {{provider: ant, upstream_model: tool-call-text}}
signals:
  - {{name: code, type: keyword, any: [python]}}
  - {{name: legal, type: keyword, any: [contract]}}
decisions:
  - {{name: coding, priority: 10, when: code, route: {{candidates: [broken, echo]}}}}
  - {{name: legal, priority: 5, when: legal, route: {{candidates: [claude-echo]}}}}
  - {{name: default, when: true, route: {{candidates: [echo]}}}}
"""
HELLO = [{"role": "user", "content": "hello world"}]
WEATHER: Any = {
    "name": TOOL_NAME,
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def gateway(make_gateway: GatewayFactory) -> str:
    return make_gateway(POLICY)


@pytest.fixture
def client(gateway: str) -> anthropic.Anthropic:
    # No retries: each test sees exactly what one request got.
    return anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture
def http(gateway: str) -> Iterator[httpx.Client]:
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=10) as client:
        yield client


def last_upstream_body(upstream: FakeUpstream, path: str = "/v1/chat/completions") -> Any:
    return next(body for p, _, body in reversed(upstream.requests) if p == path)


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"] == response.headers["x-router-request-id"]
    body = response.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind, body
    assert body["error"]["message"]
    return str(body["error"]["message"])


# --- answers -------------------------------------------------------------------------


def test_create_plain_with_system(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    raw = client.messages.with_raw_response.create(
        model="auto", max_tokens=100, system="Be brief.", messages=HELLO
    )
    assert raw.headers["x-router-decision"] == "default"
    assert raw.headers["x-router-model"] == "echo"
    assert raw.headers["request-id"] == raw.headers["x-router-request-id"]
    message = raw.parse()
    assert message.id.startswith("msg_")
    assert message._request_id == raw.headers["request-id"]
    assert message.type == "message"
    assert message.role == "assistant"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "echo: hello world")
    ]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == PROMPT_TOKENS
    assert message.usage.output_tokens == 3
    body = last_upstream_body(upstream)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello world"},
    ]
    assert body["max_tokens"] == 100
    assert body["model"] == "echo"


def test_max_tokens_cut_is_max_tokens(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="echo", max_tokens=2, messages=HELLO)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello"


def test_tools_give_tool_use_blocks(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    message = client.messages.create(
        model="tools",
        max_tokens=100,
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "any"},
    )
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == (TOOL_NAME, TOOL_ARGUMENTS)
    body = last_upstream_body(upstream)
    assert body["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert body["tool_choice"] == "required"


def test_stream_text_deltas_final_message_and_usage(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="auto", max_tokens=100, messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        texts = "".join(stream.text_stream)  # already consumed: empty
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert "text" in kinds
    assert texts == ""
    assert final.content[0].type == "text"
    assert final.content[0].text == "echo: hello world"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == PROMPT_TOKENS  # from message_delta
    assert final.usage.output_tokens == 3


def test_stream_text_only(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="auto", max_tokens=100, messages=HELLO) as stream:
        assert "".join(stream.text_stream) == "echo: hello world"


def test_stream_with_tool_calls_sends_input_json_deltas(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="tools", max_tokens=100, messages=HELLO, tools=[WEATHER]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert {d.type for d in deltas} == {"input_json_delta"}
    assert "".join(d.partial_json for d in deltas) == '{"city": "Paris"}'  # type: ignore[union-attr]
    (block,) = final.content
    assert block.type == "tool_use"
    assert block.input == TOOL_ARGUMENTS
    assert final.stop_reason == "tool_use"


def test_count_tokens_offline(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    calls = len(upstream.requests)
    counted = client.messages.count_tokens(
        model="auto",
        system="Be brief.",
        messages=[{"role": "user", "content": "hello world, how are you?"}],
    )
    counter = shared_counter()
    assert counted.input_tokens == counter.exact("Be brief.\nhello world, how are you?")
    with_tools = client.messages.count_tokens(model="auto", messages=HELLO, tools=[WEATHER])
    assert with_tools.input_tokens > counter.exact("hello world") + 5
    assert len(upstream.requests) == calls  # no model was called


def test_count_tokens_needs_the_key_and_a_valid_body(http: httpx.Client) -> None:
    path = "/v1/messages/count_tokens"
    body = {"model": "auto", "messages": HELLO}
    assert http.post(path, json=body).json()["input_tokens"] == 2
    wrong = http.post(path, json=body, headers={"x-api-key": "nope"})
    assert_anthropic_error(wrong, 401, "authentication_error")
    message = assert_anthropic_error(
        http.post(path, json={"model": "auto"}), 400, "invalid_request_error"
    )
    assert message == "messages: Field required"


# --- what Claude Code sends ----------------------------------------------------------

CACHE = {"type": "ephemeral"}


def claude_code_request(**extra: Any) -> dict[str, Any]:
    """The shape of a Claude Code turn: system blocks and tools with cache_control, a
    thinking budget, metadata.user_id, a history with thinking, tool use and results."""
    return {
        "model": "auto",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": CACHE},
            {"type": "text", "text": "Work in /repo.", "cache_control": CACHE},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {"type": "text", "text": "what is the weather?", "cache_control": CACHE},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "c2ln"},
                    {
                        "type": "tool_use",
                        "id": "toolu_01",
                        "name": TOOL_NAME,
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01",
                        "content": "sunny",
                        "cache_control": CACHE,
                    }
                ],
            },
        ],
        "tools": [WEATHER | {"cache_control": CACHE}],
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "metadata": {"user_id": "user_abc_account_def_session_ghi"},
        **extra,
    }


def test_claude_code_request_streamed(http: httpx.Client, upstream: FakeUpstream) -> None:
    headers = {"anthropic-beta": "interleaved-thinking-2025-05-14", "x-app": "cli"}
    with http.stream(
        "POST", "/v1/messages?beta=true", json=claude_code_request(stream=True), headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = list(response.iter_lines())
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    body = last_upstream_body(upstream)
    assert body["messages"] == [
        {"role": "system", "content": "You are Claude Code.\n\nWork in /repo."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                {"type": "text", "text": "what is the weather?"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": TOOL_NAME, "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny"},
    ]
    assert body["user"] == "user_abc_account_def_session_ghi"
    assert body["stream_options"] == {"include_usage": True}
    assert "thinking" not in body
    assert "cache_control" not in str(body)


def test_claude_code_request_with_the_sdk(client: anthropic.Anthropic) -> None:
    request = claude_code_request(max_tokens=1024)  # the SDK streams bigger budgets
    message = client.messages.create(**request)
    assert message.content[0].type == "text"
    assert (
        message.content[0].text
        == "echo: <system-reminder>ctx</system-reminder> what is the weather?"
    )


# --- auth and errors -----------------------------------------------------------------


def test_x_api_key_or_bearer_auth(gateway: str) -> None:
    bearer = anthropic.Anthropic(base_url=gateway, auth_token=CLIENT_KEY, max_retries=0)
    assert bearer.messages.create(model="auto", max_tokens=10, messages=HELLO).content
    wrong = anthropic.Anthropic(base_url=gateway, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(model="auto", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Incorrect API key provided"},
    }
    assert caught.value.request_id


def test_missing_key_is_401_in_anthropic_shape(gateway: str) -> None:
    response = httpx.post(gateway + "/v1/messages", json={"model": "auto"})
    assert_anthropic_error(response, 401, "authentication_error")


def test_unknown_model_is_404_not_found_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-nope", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "claude-nope" in caught.value.message


def test_upstream_rate_limit_is_429_rate_limit_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="limited", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "auto", "messages": HELLO}, "max_tokens: Field required"),
        ({"model": "auto", "max_tokens": 5}, "messages: Field required"),
        (
            {"model": "auto", "max_tokens": 5, "messages": []},
            "messages: List should have at least 1 item",
        ),
        (
            {"model": "auto", "max_tokens": 0, "messages": HELLO},
            "max_tokens: Input should be greater",
        ),
        (
            {"model": "auto", "max_tokens": "5", "messages": HELLO},
            "max_tokens: Input should be a valid integer",
        ),
        ({"model": "auto", "max_tokens": 5, "messages": HELLO, "temperature": 3}, "temperature: "),
        ({"model": "auto", "max_tokens": 5, "messages": HELLO, "stream": "yes"}, "stream: "),
        (
            {"model": "auto", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages.0: ",
        ),
        (
            {"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]},
            "messages.0.user.content",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "video"}]}],
            },
            "messages.0.user.content.0",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "text"}]}],
            },
            "messages.0.user.content.0.text.text: Field required",
        ),
        (
            {"model": "auto", "max_tokens": 5, "messages": HELLO, "tools": [{"name": "x"}]},
            "tools.0.input_schema: Field required",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 5,
                "messages": HELLO,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "server tool 'web_search_20250305'",
        ),
        (
            {"model": "auto", "max_tokens": 5, "messages": HELLO, "tool_choice": {"type": "maybe"}},
            "tool_choice",
        ),
        ({"model": 7, "max_tokens": 5, "messages": HELLO}, "model: Input should be a valid string"),
    ],
)
def test_bad_bodies_are_400_invalid_request_error(
    http: httpx.Client, body: dict[str, Any], message: str
) -> None:
    got = assert_anthropic_error(http.post("/v1/messages", json=body), 400, "invalid_request_error")
    assert got.startswith(message) or message in got, got


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (errors.InvalidRequestError("x"), "invalid_request_error"),
        (errors.AuthenticationError("x"), "authentication_error"),
        (errors.NotFoundError("x"), "not_found_error"),
        (errors.MethodNotAllowedError("x"), "invalid_request_error"),
        (errors.PayloadTooLargeError("x"), "request_too_large"),
        (errors.RateLimitError("x"), "rate_limit_error"),
        (errors.UpstreamStatusError("x", upstream_status=429), "rate_limit_error"),
        (errors.UpstreamStatusError("x", upstream_status=422), "invalid_request_error"),
        (errors.UpstreamStatusError("x", upstream_status=500), "api_error"),
        (errors.UpstreamError("x"), "api_error"),
        (errors.UpstreamTimeoutError("x"), "timeout_error"),
        (errors.ServiceUnavailableError("x"), "overloaded_error"),
        (errors.GatewayError("x"), "api_error"),
    ],
)
def test_every_gateway_error_has_an_anthropic_type(error: errors.GatewayError, kind: str) -> None:
    assert anthropic_error(error) == {"type": "error", "error": {"type": kind, "message": "x"}}


def test_body_over_the_limit_is_413_request_too_large(http: httpx.Client) -> None:
    big = {
        "model": "auto",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x" * 9_000_000}],
    }
    assert_anthropic_error(http.post("/v1/messages", json=big), 413, "request_too_large")


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b"\xff\xfe", b"null"])
def test_malformed_json_is_400(http: httpx.Client, content: bytes) -> None:
    response = http.post("/v1/messages", content=content)
    assert_anthropic_error(response, 400, "invalid_request_error")


def test_too_many_messages_is_400(http: httpx.Client) -> None:
    body = {"model": "auto", "max_tokens": 5, "messages": HELLO * 2049}
    message = assert_anthropic_error(
        http.post("/v1/messages", json=body), 400, "invalid_request_error"
    )
    assert "more than the limit" in message


# --- the engine's work: routing, fallback, stream failures, the log line ---------------


def test_keyword_picks_the_decision_and_a_failed_candidate_falls_back(
    client: anthropic.Anthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    raw = client.messages.with_raw_response.create(
        model="auto",
        max_tokens=50,
        messages=[{"role": "user", "content": "why does my python loop hang?"}],
    )
    assert raw.headers["x-router-decision"] == "coding"
    assert raw.headers["x-router-model"] == "echo"  # broken answered 500 first
    assert raw.headers["x-router-attempts"] == "2"
    assert raw.parse().content[0].text == "echo: why does my python loop hang?"  # type: ignore[union-attr]
    line = log_line(caplog, raw.headers["request-id"])
    assert line["surface"] == "messages"
    assert line["path"] == "/v1/messages"
    assert (line["decision"], line["model"], line["status"]) == ("coding", "echo", 200)
    assert line["prompt_tokens"] == PROMPT_TOKENS


def test_a_decision_name_as_model_streams_with_fallback(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="coding", max_tokens=50, messages=HELLO) as stream:
        assert stream.response.headers["x-router-decision"] == "coding"
        assert stream.response.headers["x-router-model"] == "echo"
        assert stream.response.headers["x-router-attempts"] == "2"
        final = stream.get_final_message()
    assert final.content[0].text == "echo: hello world"  # type: ignore[union-attr]


@pytest.mark.parametrize("model", ["cut", "stream-error"])
def test_a_failure_after_the_first_byte_is_an_error_event(
    client: anthropic.Anthropic, caplog: pytest.LogCaptureFixture, model: str
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    seen: list[str] = []
    with client.messages.stream(model=model, max_tokens=50, messages=HELLO) as stream:
        request_id = stream.response.headers["request-id"]
        with pytest.raises(anthropic.APIStatusError) as caught:  # events, then the error
            seen.extend(event.type for event in stream)
    assert seen[0] == "message_start"
    assert "message_stop" not in seen
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    line = log_line(caplog, request_id)  # written when the stream has ended
    assert line["surface"] == "messages"
    assert line["error"] is not None


def test_error_event_on_the_wire(http: httpx.Client) -> None:
    body = {"model": "cut", "max_tokens": 50, "messages": HELLO, "stream": True}
    with http.stream("POST", "/v1/messages", json=body) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-2] == "event: error"
    assert lines[-1].startswith('data: {"type":"error","error":{"type":"api_error","message":')


# --- an Anthropic-format upstream (translated Anthropic -> chat -> Anthropic for now) ----


def test_anthropic_upstream_through_the_messages_surface(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    raw = client.messages.with_raw_response.create(
        model="auto",
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "read this contract"}],
    )
    assert raw.headers["x-router-decision"] == "legal"
    assert raw.headers["x-router-model"] == "claude-echo"
    message = raw.parse()
    assert message.id == "msg_fake_1"  # the upstream's own id
    assert message.content[0].text == "echo: read this contract"  # type: ignore[union-attr]
    assert message.usage.input_tokens == PROMPT_TOKENS
    path, headers, body = upstream.requests[-1]
    assert path == "/v1/messages"
    assert headers["x-api-key"] == ANTHROPIC_KEY  # the provider's key, not the client's
    assert body["system"] == "Be brief."
    assert UPSTREAM_KEY not in str(headers)


def test_anthropic_upstream_tools_streamed(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="claude-tools", max_tokens=50, messages=HELLO, tools=[WEATHER]
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == TOOL_ARGUMENTS  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    assert final.id == "msg_fake_1"


def test_anthropic_upstream_gets_claude_codes_body_untranslated(
    http: httpx.Client, upstream: FakeUpstream
) -> None:
    """An Anthropic upstream speaks Messages: Claude Code's body goes as it is (thinking
    blocks, cache_control, metadata: what a translation would drop), and the upstream's
    answer comes back as it is."""
    body = claude_code_request(model="claude-echo")
    response = http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    sent = last_upstream_body(upstream, "/v1/messages")
    assert sent == body | {"model": sent["model"], "stream": False}  # only the model's name
    assert sent["model"] != "auto"
    assert sent["messages"][1]["content"][0]["type"] == "thinking"
    assert sent["system"][0]["cache_control"] == CACHE
    assert response.json()["type"] == "message"


def test_a_decision_with_plugins_translates_instead_of_passing_through(
    make_gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    """Plugins rewrite the chat body (a system prompt here): a native call would skip
    them, so the request is translated and the plugin applies."""
    url = make_gateway(
        """\
providers:
  anthropic: {type: anthropic, base_url: "${UPSTREAM}", api_key: "${ANTHROPIC_KEY}"}
models:
  claude-echo: {provider: anthropic}
decisions:
  - name: default
    when: true
    route: {candidates: [claude-echo]}
    plugins: [{system_prompt: "Be terse."}]
"""
    )
    body = claude_code_request(model="auto")
    response = httpx.post(url + "/v1/messages", json=body)
    assert response.status_code == 200, response.text
    sent = last_upstream_body(upstream, "/v1/messages")
    assert "Be terse." in str(sent["system"])
    assert all(b["type"] != "thinking" for m in sent["messages"] for b in m["content"])
