"""An upstream that resets connections is a transport failure (retry, then fall back),
however deep in the network stack the reset surfaces."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from anyio._backends._asyncio import SocketStream
from anyio.abc import SocketAttribute

from router_proxy.config.load import load_config_text
from router_proxy.errors import UpstreamError
from router_proxy.providers.http import translate_errors
from router_proxy.server.app import create_app
from tests.support.serving import ServerThread
from tests.support.upstream import FakeUpstream, ResettingServer


class ResetTransport:
    """What asyncio leaves behind once the peer has reset the connection: no socket."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_a_reset_surfacing_in_anyio_as_attribute_error_is_a_transport_error() -> None:
    """Regression: httpcore asks for ``ssl_object`` right after connecting; when the
    upstream has already reset the connection anyio raises AttributeError, which escaped
    as an unhandled 500 instead of failing over."""
    stream = SocketStream(ResetTransport(), None)  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as caught, translate_errors("p", "m"):
        stream.extra(SocketAttribute.remote_address, None)
    assert caught.value.transport
    assert "connection reset" in caught.value.message


def test_our_own_attribute_errors_are_not_disguised() -> None:
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
    """End to end, many at once (the race above is timing-dependent; the test above
    pins it deterministically)."""
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
