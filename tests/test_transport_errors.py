"""An upstream that resets connections is a transport failure (retry, then fall back),
however deep in the network stack the reset surfaces."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from router_proxy.config.load import load_config_text
from router_proxy.errors import UpstreamError, UpstreamTimeoutError
from router_proxy.providers.http import translate_errors
from router_proxy.server.app import create_app
from tests.support.serving import ServerThread
from tests.support.upstream import FakeUpstream, ResettingServer


@pytest.mark.parametrize(
    "raised",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=type,
)
def test_a_dropped_or_reset_connection_is_a_transport_error(raised: Exception) -> None:
    """Transport failures may be retried on the same model; wherever in aiohttp's stack
    a reset surfaces, it must not escape as an unhandled 500."""
    with pytest.raises(UpstreamError) as caught, translate_errors("p", "m"):
        raise raised
    assert caught.value.transport
    assert "model 'm' (provider 'p') is unreachable" in caught.value.message


def test_a_read_timeout_is_a_timeout_not_a_transport_error() -> None:
    with pytest.raises(UpstreamTimeoutError), translate_errors("p", "m"):
        raise aiohttp.SocketTimeoutError("Timeout on reading data from socket")


def test_our_own_errors_are_not_disguised() -> None:
    with pytest.raises(AttributeError), translate_errors("p", "m"):
        None.missing  # type: ignore[attr-defined]  # noqa: B018


POLICY = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
  resetting: {type: openai, base_url: "${RESET}/v1"}
models:
  reset: {provider: resetting}
  echo: {provider: up, upstream_model: echo}
resilience: {breaker: {enabled: false}, retries: {backoff_initial: 0.01}}
decisions:
  - {name: default, when: true, route: {candidates: [reset, echo]}}
"""


def test_concurrent_requests_fail_over_from_a_resetting_upstream(
    upstream: FakeUpstream,
) -> None:
    """End to end, many at once: every reset fails over to the healthy model."""
    import httpx

    with ResettingServer() as resetting:
        env = {"UPSTREAM": upstream.base_url, "RESET": resetting.base_url}
        config, _ = load_config_text(POLICY, env=env)
        with ServerThread(create_app(config)) as gateway:

            async def fire() -> list[httpx.Response]:
                body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
                async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
                    calls = [client.post("/v1/chat/completions", json=body) for _ in range(100)]
                    return await asyncio.gather(*calls)

            answers = asyncio.run(fire())
    assert [a.status_code for a in answers] == [200] * 100
    assert {a.headers["x-router-model"] for a in answers} == {"echo"}
