"""The OpenAI-compatible adapter against a real HTTP upstream (tests/upstream.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from router_proxy.errors import UpstreamError, UpstreamStatusError, UpstreamTimeoutError
from router_proxy.protocol import Usage
from router_proxy.providers.base import ChatStream, UpstreamCall
from router_proxy.providers.http import DONE_EVENT
from router_proxy.providers.openai import OpenAIProvider, OpenAIProviderConfig
from tests.upstream import FakeUpstream

pytestmark = pytest.mark.anyio

KEY = "sk-secret"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def up(upstream: FakeUpstream) -> FakeUpstream:
    upstream.clear()
    return upstream


def make_provider(base_url: str, **config: Any) -> OpenAIProvider:
    settings = OpenAIProviderConfig(type="openai", base_url=base_url, api_key=KEY, **config)
    return OpenAIProvider("local", settings)


@pytest.fixture
async def provider(up: FakeUpstream) -> AsyncIterator[OpenAIProvider]:
    provider = make_provider(up.base_url + "/v1")
    await provider.start()
    yield provider
    await provider.aclose()


def make_call(upstream_model: str, *, timeout: float = 5, **body: Any) -> UpstreamCall:
    payload = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], **body}
    return UpstreamCall(
        model_name="m",
        upstream_model=upstream_model,
        body=payload,
        timeout=timeout,
        request_id="r1",
    )


async def read_chunks(stream: ChatStream) -> list[dict[str, Any]]:
    """The parsed chunks of a stream that must end with [DONE]."""
    events = [event async for event in stream.chunks]
    assert events[-1] == DONE_EVENT
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    assert DONE_EVENT not in events[:-1]
    return [orjson.loads(e[len(b"data: ") :]) for e in events[:-1]]


def content_of(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for c in chunks
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- requests ---------------------------------------------------------------


async def test_request_goes_upstream_with_model_replaced_and_auth(
    provider: OpenAIProvider, up: FakeUpstream
) -> None:
    await provider.complete(make_call("echo-model"))
    [(path, headers, body)] = up.requests
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["x-request-id"] == "r1"
    assert headers["content-type"] == "application/json"
    assert body == {
        "model": "echo-model",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": False,
    }


async def test_unknown_params_reach_the_upstream_untouched(
    provider: OpenAIProvider, up: FakeUpstream
) -> None:
    extra: dict[str, Any] = {
        "logit_bias": {"50256": -100},
        "foo_custom": {"nested": [1, 2.5, None, "x"]},
        "seed": 7,
        "response_format": {"type": "json_object"},
    }
    call = make_call("echo-model", **extra)
    await provider.complete(call)
    sent = up.requests[-1][2]
    assert sent == call.body | {"model": "echo-model", "stream": False}
    assert call.body["model"] == "m"  # the caller's body is not mutated


async def test_stream_request_sets_stream_and_keeps_stream_options(
    provider: OpenAIProvider, up: FakeUpstream
) -> None:
    call = make_call("echo-model", stream=True, stream_options={"include_usage": True})
    await read_chunks(await provider.stream(call))
    sent = up.requests[-1][2]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_configured_extra_headers_are_sent(up: FakeUpstream) -> None:
    provider = make_provider(up.base_url + "/v1/", headers={"x-org": "org-1"})
    await provider.start()
    try:
        await provider.complete(make_call("echo-model"))
    finally:
        await provider.aclose()
    headers = up.requests[-1][1]
    assert headers["x-org"] == "org-1"
    assert up.requests[-1][0] == "/v1/chat/completions"  # trailing slash in base_url is fine


async def test_no_api_key_sends_no_authorization(up: FakeUpstream) -> None:
    settings = OpenAIProviderConfig(type="openai", base_url=up.base_url + "/v1")
    provider = OpenAIProvider("local", settings)
    await provider.start()
    try:
        await provider.complete(make_call("echo-model"))
    finally:
        await provider.aclose()
    assert "authorization" not in up.requests[-1][1]


async def test_use_before_start_is_a_clear_error(up: FakeUpstream) -> None:
    provider = make_provider(up.base_url + "/v1")
    with pytest.raises(RuntimeError, match="before start"):
        await provider.complete(make_call("echo-model"))


# --- replies ------------------------------------------------------------------


async def test_complete_returns_the_upstream_reply_and_usage(provider: OpenAIProvider) -> None:
    completion = await provider.complete(make_call("echo-model"))
    data = orjson.loads(completion.body)
    assert data["id"] == "chatcmpl-fake"
    assert data["model"] == "echo-model"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "echo: hello there"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert completion.usage == Usage(prompt_tokens=10, completion_tokens=3)


async def test_complete_tool_call(provider: OpenAIProvider) -> None:
    completion = await provider.complete(make_call("tool-call"))
    choice = orjson.loads(completion.body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}


async def test_stream_relays_chunks_in_order(provider: OpenAIProvider) -> None:
    stream = await provider.stream(make_call("echo-model", stream=True))
    chunks = await read_chunks(stream)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content_of(chunks) == ["echo:", " hello", " there"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert not any("usage" in c for c in chunks)  # the client did not ask for it...
    assert stream.stats.finish_reason == "stop"
    assert stream.stats.usage == Usage(prompt_tokens=10, completion_tokens=3)  # ...the gateway did


async def test_stream_usage_can_be_left_alone(up: FakeUpstream) -> None:
    provider = OpenAIProvider(
        "fake",
        OpenAIProviderConfig(type="openai", base_url=up.base_url + "/v1", stream_usage=False),
    )
    await provider.start()
    try:
        stream = await provider.stream(make_call("echo-model", stream=True))
        await read_chunks(stream)
    finally:
        await provider.aclose()
    assert stream.stats.usage is None
    assert "stream_options" not in up.requests[-1][2]


async def drain(stream: ChatStream, into: list[bytes]) -> None:
    async for chunk in stream.chunks:
        into.append(chunk)


async def test_stream_error_chunk_and_unfinished_stream_raise(provider: OpenAIProvider) -> None:
    for model, message in (
        ("stream-error", "engine overloaded"),
        ("no-finish", "before finishing"),
    ):
        stream = await provider.stream(make_call(model, stream=True))
        received: list[bytes] = []
        with pytest.raises(UpstreamError, match=message):
            await drain(stream, received)
        assert len(received) >= 1
        assert DONE_EVENT not in received


async def test_stream_usage_when_asked_for(provider: OpenAIProvider) -> None:
    call = make_call("echo-model", stream=True, stream_options={"include_usage": True})
    stream = await provider.stream(call)
    chunks = await read_chunks(stream)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    assert stream.stats.usage == Usage(prompt_tokens=10, completion_tokens=3)
    assert stream.stats.finish_reason == "stop"


async def test_stream_tool_call_deltas(provider: OpenAIProvider) -> None:
    stream = await provider.stream(make_call("tool-call", stream=True))
    chunks = await read_chunks(stream)
    deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert deltas[0]["id"] == "call_fake_1"
    assert deltas[0]["function"]["name"] == "get_weather"
    assert {d["index"] for d in deltas} == {0}
    arguments = "".join(d["function"]["arguments"] for d in deltas)
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert stream.stats.finish_reason == "tool_calls"


async def test_closing_a_stream_early_releases_the_connection(up: FakeUpstream) -> None:
    provider = make_provider(up.base_url + "/v1", max_connections=1)
    await provider.start()
    try:
        stream = await provider.stream(make_call("echo-model", stream=True))
        first = await stream.chunks.__anext__()
        assert b'"role":"assistant"' in first.replace(b" ", b"")
        await stream.chunks.aclose()
        # With one pooled connection, this times out if the stream leaked it.
        completion = await provider.complete(make_call("echo-model", timeout=2))
        assert completion.usage == Usage(prompt_tokens=10, completion_tokens=3)
    finally:
        await provider.aclose()


# --- errors -------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("fail-500", 502, "upstream_error"),
        ("fail-400", 400, "upstream_error"),
        ("fail-429", 429, "rate_limit_exceeded"),
    ],
)
async def test_upstream_error_statuses(
    provider: OpenAIProvider, model: str, status: int, code: str, streaming: bool
) -> None:
    call = make_call(model, stream=streaming)
    with pytest.raises(UpstreamStatusError) as info:
        await (provider.stream(call) if streaming else provider.complete(call))
    error = info.value
    assert error.status_code == status
    assert error.upstream_status == int(model.removeprefix("fail-"))
    assert error.code == code
    assert "'m'" in error.message  # names the gateway's model, not the upstream one
    if model == "fail-429":
        assert error.headers == {"retry-after": "7"}
        assert error.error_type == "rate_limit_error"
    else:
        assert error.headers == {}
    if model == "fail-400":
        assert "refuses this request" in error.message


@pytest.mark.parametrize("streaming", [False, True])
async def test_auth_error_message_does_not_leak_the_key(
    provider: OpenAIProvider, up: FakeUpstream, streaming: bool
) -> None:
    call = make_call("fail-401", stream=streaming)
    with pytest.raises(UpstreamStatusError) as info:
        await (provider.stream(call) if streaming else provider.complete(call))
    assert up.requests[-1][1]["authorization"] == f"Bearer {KEY}"  # the key did go upstream
    assert KEY not in info.value.message
    assert KEY not in str(info.value)
    assert "invalid api key: ***" in info.value.message
    assert info.value.status_code == 502  # the gateway's own key, not the client's fault
    assert info.value.upstream_status == 401


@pytest.mark.parametrize("streaming", [False, True])
async def test_hang_times_out(provider: OpenAIProvider, streaming: bool) -> None:
    call = make_call("hang", timeout=0.5, stream=streaming)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError) as info:
        await (provider.stream(call) if streaming else provider.complete(call))
    assert time.monotonic() - started < 3
    assert info.value.status_code == 504
    assert "timed out" in info.value.message


@pytest.mark.parametrize("streaming", [False, True])
async def test_connection_refused_is_an_upstream_error(streaming: bool) -> None:
    provider = make_provider(f"http://127.0.0.1:{closed_port()}/v1")
    await provider.start()
    try:
        call = make_call("echo-model", stream=streaming)
        with pytest.raises(UpstreamError) as info:
            await (provider.stream(call) if streaming else provider.complete(call))
    finally:
        await provider.aclose()
    assert type(info.value) is UpstreamError
    assert info.value.status_code == 502
    assert "unreachable" in info.value.message
    assert "127.0.0.1" not in info.value.message  # no URLs in client-facing messages


async def test_cut_stream_raises_while_iterating(provider: OpenAIProvider) -> None:
    stream = await provider.stream(make_call("cut-stream", stream=True))
    received: list[bytes] = []

    async def drain() -> None:
        async for event in stream.chunks:
            received.append(event)

    with pytest.raises(UpstreamError) as info:
        await drain()
    assert not isinstance(info.value, UpstreamStatusError)
    chunks = [orjson.loads(e[len(b"data: ") :]) for e in received]
    assert content_of(chunks) == ["echo:", " hello"]  # what came before the cut got through
    assert DONE_EVENT not in received


async def test_non_json_reply_is_an_upstream_error(provider: OpenAIProvider) -> None:
    with pytest.raises(UpstreamError, match="non-JSON"):
        await provider.complete(make_call("bad-json"))
