"""A new API surface is one Surface subclass plus one route, and gets the whole walk:
routing, fallback, the x-router-* headers, metrics and the log line, streamed or not.

The surface here is a toy ("say"): ``{"say": "...", "loud": bool}`` in, ``{"said": "..."}``
out, streams as ``said:`` lines, errors as ``{"oops": code}``. It is not part of the
gateway; it shows that the engine needs no change to serve another API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from router_proxy.config.load import load_config_text
from router_proxy.config.schema import ServerConfig
from router_proxy.errors import GatewayError, InvalidRequestError
from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.providers.base import Completion
from router_proxy.server.app import create_app
from router_proxy.server.deps import CurrentRuntime
from router_proxy.server.surfaces import handler
from router_proxy.server.surfaces.base import Surface
from tests.support.logs import log_line
from tests.support.serving import ServerThread
from tests.support.upstream import FakeUpstream

POLICY = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
models:
  echo: {provider: up, upstream_model: echo}
  broken: {provider: up, upstream_model: fail-500}
signals:
  - {name: code, type: keyword, any: [python]}
decisions:
  - {name: coding, priority: 10, when: code, route: {candidates: [broken, echo]}}
  - {name: default, when: true, route: {candidates: [echo]}}
"""


class SaySurface(Surface):
    name = "say"

    def parse(
        self, raw: dict[str, Any], settings: ServerConfig
    ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
        text = raw.get("say")
        if not isinstance(text, str):
            raise InvalidRequestError("Invalid value for 'say': a string", param="say")
        body = {
            "model": "auto",
            "messages": [{"role": "user", "content": text}],
            "stream": bool(raw.get("loud")),
        }
        return ChatCompletionRequest.model_validate(body), body

    def render(self, completion: Completion) -> bytes:
        answer = orjson.loads(completion.body)["choices"][0]["message"]["content"]
        return orjson.dumps({"said": answer})

    async def translate_stream(
        self, events: AsyncGenerator[bytes, None]
    ) -> AsyncGenerator[bytes, None]:
        async for block in events:  # one or more whole events per block
            for event in block.split(b"\n\n"):
                data = event.removeprefix(b"data: ").strip()
                if data and data != b"[DONE]":
                    for choice in orjson.loads(data).get("choices") or ():
                        yield b"said: " + (choice["delta"].get("content") or "").encode() + b"\n"

    def error_response(self, error: GatewayError, headers: dict[str, str]) -> Response:
        return JSONResponse({"oops": error.code}, status_code=error.status_code, headers=headers)


SAY = SaySurface()


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[str]:
    config, _ = load_config_text(POLICY, env={"UPSTREAM": upstream.base_url})
    app = create_app(config)

    @app.post("/v1/say")  # the one route a surface adds
    async def say(request: Request, runtime: CurrentRuntime) -> Response:
        return await handler.serve(SAY, runtime, request)

    with ServerThread(app) as server:
        yield server.base_url


def test_a_new_surface_is_routed_and_falls_back_like_chat(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    response = httpx.post(gateway + "/v1/say", json={"say": "a python question"})
    assert response.status_code == 200, response.text
    assert response.json() == {"said": "echo: a python question"}
    assert response.headers["x-router-decision"] == "coding"
    assert response.headers["x-router-model"] == "echo"  # broken failed: fallback
    assert response.headers["x-router-attempts"] == "2"  # broken (500: no retry), then echo
    line = log_line(caplog, response.headers["x-router-request-id"])
    assert line["surface"] == "say"
    assert line["path"] == "/v1/say"
    metrics = httpx.get(gateway + "/metrics").text
    assert 'router_requests_total{decision="coding",model="echo",status="200"} 1.0' in metrics
    assert 'router_fallbacks_total{decision="coding"} 1.0' in metrics


def test_a_new_surface_streams_through_the_engine(gateway: str) -> None:
    with httpx.stream("POST", gateway + "/v1/say", json={"say": "hi there", "loud": True}) as r:
        assert r.status_code == 200
        assert r.headers["x-router-model"] == "echo"
        text = "".join(line.removeprefix("said: ") for line in r.iter_lines())
    assert text == "echo: hi there"


def test_a_new_surface_answers_errors_in_its_own_shape(gateway: str) -> None:
    response = httpx.post(gateway + "/v1/say", json={"say": 42})
    assert response.status_code == 400
    assert response.json() == {"oops": None}
    assert "x-router-request-id" in response.headers
