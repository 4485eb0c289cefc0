"""The OpenAI-compatible adapter against a real HTTP upstream (tests/support/upstream.py): what it
does beyond the contract every adapter keeps (tests/test_provider_contract.py), mostly
passing the client's JSON through untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from router_proxy.errors import UpstreamError
from router_proxy.providers.openai import OpenAIProvider, OpenAIProviderConfig
from router_proxy.translate.common import DONE_EVENT
from tests.support.provider_helpers import (
    OPENAI_KEY,
    anyio_backend_fixture,  # noqa: F401
    drain,
    make_call,
    make_openai,
    read_chunks,
    started,
    up_fixture,  # noqa: F401
    upstream_fixture,  # noqa: F401
)
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.anyio


@pytest.fixture
async def provider(up: FakeUpstream) -> AsyncIterator[OpenAIProvider]:
    async with started(make_openai(up.base_url + "/v1")) as provider:
        yield provider


# --- requests ---------------------------------------------------------------


async def test_request_goes_upstream_with_model_replaced_and_auth(
    provider: OpenAIProvider, up: FakeUpstream
) -> None:
    await provider.complete(make_call("echo-model"))
    [(path, headers, body)] = up.requests
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
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


async def test_configured_extra_headers_are_sent(up: FakeUpstream) -> None:
    provider = make_openai(up.base_url + "/v1/", headers={"x-org": "org-1"})
    async with started(provider):
        await provider.complete(make_call("echo-model"))
    headers = up.requests[-1][1]
    assert headers["x-org"] == "org-1"
    assert up.requests[-1][0] == "/v1/chat/completions"  # trailing slash in base_url is fine


async def test_no_api_key_sends_no_authorization(up: FakeUpstream) -> None:
    settings = OpenAIProviderConfig(type="openai", base_url=up.base_url + "/v1")
    async with started(OpenAIProvider("local", settings)) as provider:
        await provider.complete(make_call("echo-model"))
    assert "authorization" not in up.requests[-1][1]


# --- streams --------------------------------------------------------------------


async def test_stream_usage_can_be_left_alone(up: FakeUpstream) -> None:
    settings = OpenAIProviderConfig(type="openai", base_url=up.base_url + "/v1", stream_usage=False)
    async with started(OpenAIProvider("fake", settings)) as provider:
        stream = await provider.stream(make_call("echo-model", stream=True))
        await read_chunks(stream)
    assert stream.stats.usage is None
    assert "stream_options" not in up.requests[-1][2]


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


def _event(payload: dict[str, Any]) -> bytes:
    import orjson

    return b"data: " + orjson.dumps(payload) + b"\n\n"


def test_a_usage_chunk_with_an_empty_choice_is_hidden_when_the_gateway_asked_for_it() -> None:
    """Some servers send the usage chunk with ``choices: [{"index":0,"delta":{}}]``; a
    client that did not ask for usage must not get it (the SDK would read an empty
    delta), yet the gateway still counts it."""
    from router_proxy.providers.base import StreamStats
    from router_proxy.providers.openai import _inspect

    text = _event({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
    finish = _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    empty = _event({"choices": [{"index": 0, "delta": {}}], "usage": usage})
    stats = StreamStats()
    kept, done, failure = _inspect(text + finish + empty + DONE_EVENT, stats, make_call("m"), True)
    assert kept == text + finish
    assert (done, failure) == (True, None)
    assert stats.usage is not None
    assert stats.usage.total_tokens == 4
    assert stats.finish_reason == "stop"
    kept, _, _ = _inspect(text + finish + empty, StreamStats(), make_call("m"), False)
    assert kept == text + finish + empty  # a client that asked for usage gets it
