"""What every HTTP adapter promises the gateway, whatever its upstream's API: one set of
tests, run against the OpenAI-compatible and the Anthropic adapter over a real HTTP
upstream (tests/support/upstream.py).

Replies and streams come back in the OpenAI format either way; upstream failures become
the same gateway errors. Where the adapters legitimately differ (how the key is sent,
ids the fake upstream gives), the ``Adapter`` table says so. Translation and
passthrough details stay in test_provider_openai.py and test_provider_anthropic.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from router_proxy.errors import UpstreamError, UpstreamStatusError, UpstreamTimeoutError
from router_proxy.protocol import Usage
from router_proxy.providers.http_provider import HTTPProvider
from router_proxy.translate.common import DONE_EVENT
from tests.support.provider_helpers import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    WEATHER_TOOL,
    anyio_backend_fixture,  # noqa: F401
    closed_port,
    content_of,
    deltas,
    drain,
    make_anthropic,
    make_call,
    make_openai,
    parse_events,
    read_chunks,
    split_events,
    started,
    up_fixture,  # noqa: F401
    upstream_fixture,  # noqa: F401
)
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Adapter:
    """One adapter, and what it does differently where the contract leaves room."""

    name: str
    build: Callable[..., HTTPProvider]
    root_suffix: str  # what follows the upstream's root in the adapter's base_url
    key: str
    key_header: tuple[str, str]  # the header the key goes upstream in, and its value
    reply_id: str  # the id the fake upstream gives its replies, passed on to the client
    tool_call_id: str
    keeps_stream_options: bool  # does the client's stream_options go upstream?

    def make(self, root: str, **config: Any) -> HTTPProvider:
        return self.build(root + self.root_suffix, **config)


ADAPTERS = [
    Adapter(
        name="openai",
        build=make_openai,
        root_suffix="/v1",
        key=OPENAI_KEY,
        key_header=("authorization", f"Bearer {OPENAI_KEY}"),
        reply_id="chatcmpl-fake",
        tool_call_id="call_fake_1",
        keeps_stream_options=True,
    ),
    Adapter(
        name="anthropic",
        build=make_anthropic,
        root_suffix="",
        key=ANTHROPIC_KEY,
        key_header=("x-api-key", ANTHROPIC_KEY),
        reply_id="msg_fake_1",
        tool_call_id="toolu_fake_1",
        keeps_stream_options=False,  # the Messages API has no such field
    ),
]


@pytest.fixture(params=ADAPTERS, ids=lambda adapter: adapter.name)
def adapter(request: pytest.FixtureRequest) -> Adapter:
    param: Adapter = request.param
    return param


@pytest.fixture
async def provider(adapter: Adapter, up: FakeUpstream) -> AsyncIterator[HTTPProvider]:
    async with started(adapter.make(up.base_url)) as provider:
        yield provider


# --- lifecycle ----------------------------------------------------------------------


async def test_use_before_start_is_a_clear_error(adapter: Adapter, up: FakeUpstream) -> None:
    provider = adapter.make(up.base_url)
    with pytest.raises(RuntimeError, match="before start"):
        await provider.complete(make_call("echo-model"))


async def test_closing_a_stream_early_releases_the_connection(
    adapter: Adapter, up: FakeUpstream
) -> None:
    async with started(adapter.make(up.base_url, max_connections=1)) as provider:
        stream = await provider.stream(make_call("echo-model", stream=True))
        first = await stream.chunks.__anext__()
        assert b'"role":"assistant"' in first.replace(b" ", b"")
        await stream.chunks.aclose()
        # With one pooled connection, this times out if the stream leaked it.
        completion = await provider.complete(make_call("echo-model", timeout=2))
        assert completion.usage == Usage(prompt_tokens=10, completion_tokens=3)


# --- replies ------------------------------------------------------------------------


async def test_complete_returns_an_openai_completion_and_usage(
    adapter: Adapter, provider: HTTPProvider
) -> None:
    completion = await provider.complete(make_call("echo-model"))
    data = orjson.loads(completion.body)
    assert data["object"] == "chat.completion"
    assert data["id"] == adapter.reply_id
    assert data["model"] == "echo-model"
    assert isinstance(data["created"], int)
    [choice] = data["choices"]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": "echo: hello there"}
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    assert completion.usage == Usage(prompt_tokens=10, completion_tokens=3)


async def test_complete_tool_call(adapter: Adapter, provider: HTTPProvider) -> None:
    completion = await provider.complete(make_call("tool-call", tools=[WEATHER_TOOL]))
    choice = orjson.loads(completion.body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == adapter.tool_call_id
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert completion.usage == Usage(prompt_tokens=10, completion_tokens=5)


async def test_stream_request_is_marked_stream(
    adapter: Adapter, provider: HTTPProvider, up: FakeUpstream
) -> None:
    call = make_call("echo-model", stream=True, stream_options={"include_usage": True})
    await read_chunks(await provider.stream(call))
    sent = up.requests[-1][2]
    assert sent["stream"] is True
    if adapter.keeps_stream_options:
        assert sent["stream_options"] == {"include_usage": True}
    else:
        assert "stream_options" not in sent


async def test_stream_yields_openai_chunks_in_order(
    adapter: Adapter, provider: HTTPProvider
) -> None:
    stream = await provider.stream(make_call("echo-model", stream=True))
    chunks = await read_chunks(stream)
    assert deltas(chunks)[0] == {"role": "assistant", "content": ""}
    assert content_of(chunks) == ["echo:", " hello", " there"]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["stop"]
    assert deltas(chunks)[-1] == {}
    assert {c["id"] for c in chunks} == {adapter.reply_id}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"echo-model"}
    assert not any("usage" in c for c in chunks)  # the client did not ask for it...
    assert stream.stats.finish_reason == "stop"
    assert stream.stats.usage == Usage(prompt_tokens=10, completion_tokens=3)  # ...the gateway did


async def test_stream_usage_chunk_when_asked_for(provider: HTTPProvider) -> None:
    call = make_call("echo-model", stream=True, stream_options={"include_usage": True})
    stream = await provider.stream(call)
    chunks = await read_chunks(stream)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert stream.stats.usage == Usage(prompt_tokens=10, completion_tokens=3)
    assert stream.stats.finish_reason == "stop"


async def test_stream_tool_call_deltas(adapter: Adapter, provider: HTTPProvider) -> None:
    stream = await provider.stream(make_call("tool-call", stream=True, tools=[WEATHER_TOOL]))
    chunks = await read_chunks(stream)
    calls = [d["tool_calls"][0] for d in deltas(chunks) if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": adapter.tool_call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(c) == {"index", "function"} and c["index"] == 0 for c in calls[1:])
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert content_of(chunks) == []
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert stream.stats.finish_reason == "tool_calls"
    assert stream.stats.usage == Usage(prompt_tokens=10, completion_tokens=5)


# --- errors -------------------------------------------------------------------------

# fake upstream model -> (gateway status, error code, error type); the same for both
# adapters: these stay the gateway's (metrics count by code). What a client sees of the
# upstream's own type, param and code: tests/test_upstream_errors.py.
UPSTREAM_FAILURES = {
    "fail-500": (502, "upstream_error", "upstream_error"),
    "fail-400": (400, "upstream_error", "invalid_request_error"),
    "fail-429": (429, "rate_limit_exceeded", "rate_limit_error"),
}


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("model", list(UPSTREAM_FAILURES))
async def test_upstream_error_statuses(provider: HTTPProvider, model: str, streaming: bool) -> None:
    call = make_call(model, stream=streaming)
    with pytest.raises(UpstreamStatusError) as info:
        await (provider.stream(call) if streaming else provider.complete(call))
    error = info.value
    status, code, error_type = UPSTREAM_FAILURES[model]
    assert error.status_code == status
    assert error.upstream_status == int(model.removeprefix("fail-"))
    assert error.code == code
    assert error.error_type == error_type
    assert error.headers == ({"retry-after": "7"} if model == "fail-429" else {})
    assert "'m'" in error.message  # names the gateway's model, not the upstream one
    if model == "fail-400":
        assert "refuses this request" in error.message


@pytest.mark.parametrize("streaming", [False, True])
async def test_auth_error_message_does_not_leak_the_key(
    adapter: Adapter, provider: HTTPProvider, up: FakeUpstream, streaming: bool
) -> None:
    call = make_call("fail-401", stream=streaming)
    with pytest.raises(UpstreamStatusError) as info:
        await (provider.stream(call) if streaming else provider.complete(call))
    header, value = adapter.key_header
    assert up.requests[-1][1][header] == value  # the key did go upstream
    assert adapter.key not in info.value.message
    assert adapter.key not in str(info.value)
    assert "invalid api key: ***" in info.value.message
    assert info.value.status_code == 502  # the gateway's own key, not the client's fault
    assert info.value.upstream_status == 401


@pytest.mark.parametrize("streaming", [False, True])
async def test_hang_times_out(provider: HTTPProvider, streaming: bool) -> None:
    call = make_call("hang", timeout=0.5, stream=streaming)
    started_at = time.monotonic()
    with pytest.raises(UpstreamTimeoutError) as info:
        await (provider.stream(call) if streaming else provider.complete(call))
    assert time.monotonic() - started_at < 3
    assert info.value.status_code == 504
    assert "timed out" in info.value.message


@pytest.mark.parametrize("streaming", [False, True])
async def test_connection_refused_is_an_upstream_error(adapter: Adapter, streaming: bool) -> None:
    async with started(adapter.make(f"http://127.0.0.1:{closed_port()}")) as provider:
        call = make_call("echo-model", stream=streaming)
        with pytest.raises(UpstreamError) as info:
            await (provider.stream(call) if streaming else provider.complete(call))
    assert type(info.value) is UpstreamError
    assert info.value.status_code == 502
    assert "unreachable" in info.value.message
    assert "127.0.0.1" not in info.value.message  # no URLs in client-facing messages


async def test_cut_stream_raises_while_iterating(provider: HTTPProvider) -> None:
    stream = await provider.stream(make_call("cut-stream", stream=True))
    received: list[bytes] = []
    with pytest.raises(UpstreamError) as info:
        await drain(stream, received)
    assert not isinstance(info.value, UpstreamStatusError)
    events = split_events(received)
    assert content_of(parse_events(events)) == ["echo:", " hello"]  # what came before got through
    assert DONE_EVENT not in events


async def test_non_json_reply_is_an_upstream_error(provider: HTTPProvider) -> None:
    with pytest.raises(UpstreamError, match="non-JSON"):
        await provider.complete(make_call("bad-json"))
