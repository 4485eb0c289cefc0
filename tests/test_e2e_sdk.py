"""End to end: the official OpenAI SDK -> gateway (real port) -> real fake upstream."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import ANTHROPIC_KEY, UPSTREAM_KEY
from tests.support.upstream import FakeUpstream

USER = [{"role": "user", "content": "hello world"}]


def test_auto_routes_by_keyword_to_anthropic_and_says_so(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Why does my Python loop hang?"},
        ],
    )
    assert raw.headers["x-router-decision"] == "coding"
    assert raw.headers["x-router-model"] == "claude-echo"
    assert len(raw.headers["x-router-request-id"]) >= 16
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: Why does my Python loop hang?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 10
    path, headers, body = upstream.requests[-1]
    assert path == "/v1/messages"
    assert body["system"] == "Be brief."
    assert body["model"] == "echo"
    assert headers["x-api-key"] == ANTHROPIC_KEY


def test_default_decision_passes_unknown_params_through(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=USER,
        temperature=0.3,
        logit_bias={"50256": -100},
        extra_body={"custom_sampler": {"min_p": 0.05}, "repetition_penalty": 1.1},
    )
    assert raw.headers["x-router-decision"] == "default"
    assert raw.headers["x-router-model"] == "gpt-echo"
    assert raw.parse().choices[0].message.content == "echo: hello world"
    path, headers, body = upstream.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["model"] == "echo"  # the configured upstream_model
    assert body["custom_sampler"] == {"min_p": 0.05}
    assert body["repetition_penalty"] == 1.1
    assert body["logit_bias"] == {"50256": -100}
    assert body["temperature"] == 0.3
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "unused" not in json.dumps(headers)  # the client's key is not forwarded


def test_model_may_be_a_decision_or_a_model(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="legal", messages=USER)
    assert (raw.headers["x-router-decision"], raw.headers["x-router-model"]) == ("legal", "local")
    assert raw.parse().choices[0].message.content == "[local] You said: hello world"
    raw = client.chat.completions.with_raw_response.create(model="claude-echo", messages=USER)
    assert raw.headers["x-router-decision"] == "direct"
    assert raw.headers["x-router-model"] == "claude-echo"


def test_streaming_through_openai_upstream(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["x-router-decision"] == "default"
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello world"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_streaming_through_anthropic_upstream(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "def f(): python stream"}], stream=True
    )
    assert raw.headers["x-router-model"] == "claude-echo"
    chunks = list(raw.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: def f(): python stream"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_anthropic_tool_calls_map_to_openai_tool_calls(client: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    completion = client.chat.completions.create(
        model="claude-tools",
        messages=USER,
        tools=tools,
        tool_choice="required",  # type: ignore[arg-type]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    stream = client.chat.completions.create(
        model="claude-tools",
        messages=USER,
        tools=tools,
        stream=True,  # type: ignore[arg-type]
    )
    arguments = ""
    for chunk in stream:
        for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            arguments += delta_call.function.arguments or ""  # type: ignore[union-attr]
    assert json.loads(arguments) == {"city": "Paris"}


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:4] == ["auto", "coding", "legal", "default"]
    assert {"gpt-echo", "claude-echo", "local"} <= set(ids)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt5", messages=USER)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"


def test_upstream_failures_map_to_502_504_and_pass_client_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="broken", messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 502
    assert info.value.type == "upstream_error"
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="slow", messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 504
    assert info.value.code == "upstream_timeout"
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="unreachable", messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 502
    assert "unreachable" in info.value.message
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="garbled", messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 502
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="refused", messages=USER)  # type: ignore[arg-type]
    assert "refuses this request" in bad.value.message
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="limited", messages=USER)  # type: ignore[arg-type]
    assert limited.value.response.headers["retry-after"] == "7"


def test_upstream_key_never_reaches_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="unauthorized", messages=USER)  # type: ignore[arg-type]
    response = info.value.response
    assert info.value.status_code == 502  # our key is wrong: not the client's fault
    assert UPSTREAM_KEY not in response.text
    assert UPSTREAM_KEY not in json.dumps(dict(response.headers))


def test_errors_during_a_stream_end_it_with_an_error_event(client: openai.OpenAI) -> None:
    for model in ("cut", "claude-cut"):
        stream = client.chat.completions.create(model=model, messages=USER, stream=True)  # type: ignore[call-overload]
        received: list[object] = []
        with pytest.raises(openai.APIError) as info:
            received.extend(stream)
        assert received, model  # content arrived before the cut, then an error, not a silent end
        assert f"model '{model}'" in str(info.value.message)


def test_stream_failing_before_first_byte_gets_a_real_status(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="broken", messages=USER, stream=True)  # type: ignore[call-overload]
    assert info.value.status_code == 502
