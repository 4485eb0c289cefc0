"""What the adapter tests share (test_provider_contract, test_provider_openai,
test_provider_anthropic): the fake upstream fixtures, building and starting adapters,
calls, and reading the OpenAI-format streams they return.

The fixtures are registered under their ``name``; a test module imports them
(``from tests.support.provider_helpers import up_fixture, ...  # noqa: F401``) to use them.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import orjson
import pytest

from router_proxy.providers.anthropic import AnthropicProvider, AnthropicProviderConfig
from router_proxy.providers.base import ChatStream, UpstreamCall
from router_proxy.providers.http_provider import HTTPProvider
from router_proxy.providers.openai import OpenAIProvider, OpenAIProviderConfig
from router_proxy.resilience.config import TimeoutsConfig
from router_proxy.translate.common import DONE_EVENT
from tests.support.upstream import FakeUpstream

OPENAI_KEY = "sk-secret"
ANTHROPIC_KEY = "sk-ant-secret"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

P = TypeVar("P", bound=HTTPProvider)


@pytest.fixture(name="anyio_backend")
def anyio_backend_fixture() -> str:
    return "asyncio"


@pytest.fixture(name="upstream", scope="module")
def upstream_fixture() -> Iterator[FakeUpstream]:
    """One fake upstream per test module (it overrides conftest's session one)."""
    with FakeUpstream() as up:
        yield up


@pytest.fixture(name="up")
def up_fixture(upstream: FakeUpstream) -> FakeUpstream:
    """The module's fake upstream, with no requests recorded yet."""
    upstream.clear()
    return upstream


def make_openai(base_url: str, **config: Any) -> OpenAIProvider:
    settings = OpenAIProviderConfig(type="openai", base_url=base_url, api_key=OPENAI_KEY, **config)
    return OpenAIProvider("local", settings)


def make_anthropic(base_url: str, **config: Any) -> AnthropicProvider:
    settings = AnthropicProviderConfig(
        type="anthropic", base_url=base_url, api_key=ANTHROPIC_KEY, **config
    )
    return AnthropicProvider("claude", settings)


@asynccontextmanager
async def started(provider: P) -> AsyncIterator[P]:
    """The provider, started for the block and closed after it."""
    await provider.start()
    try:
        yield provider
    finally:
        await provider.aclose()


def make_call(upstream_model: str, *, timeout: float = 5, **body: Any) -> UpstreamCall:
    payload = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], **body}
    return UpstreamCall(
        model_name="m",
        upstream_model=upstream_model,
        body=payload,
        timeouts=TimeoutsConfig(total=timeout),
        request_id="r1",
    )


def parse_events(events: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(e[len(b"data: ") :]) for e in events]


def split_events(blocks: list[bytes]) -> list[bytes]:
    """One item per SSE event: a relayed block may hold several."""
    return [event + b"\n\n" for block in blocks for event in block.split(b"\n\n") if event]


async def read_chunks(stream: ChatStream) -> list[dict[str, Any]]:
    """The parsed chunks of a stream that must end with [DONE]."""
    events = split_events([block async for block in stream.chunks])
    assert events[-1] == DONE_EVENT
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    assert DONE_EVENT not in events[:-1]
    return parse_events(events[:-1])


async def drain(stream: ChatStream, into: list[bytes]) -> None:
    """Read a stream to its end (or its error), keeping every event in ``into``."""
    async for chunk in stream.chunks:
        into.append(chunk)


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def content_of(chunks: list[dict[str, Any]]) -> list[str]:
    return [d["content"] for d in deltas(chunks) if d.get("content")]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
