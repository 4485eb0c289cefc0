"""``/v1/completions`` and ``/v1/embeddings`` take the same walk as chat: routed by the
policy, fallback, the x-router-* headers, usage and cost, the log line; a decision whose
candidates cannot serve the endpoint answers 400. The official ``openai`` SDK is the
client; the upstream is a real HTTP server speaking both wire formats."""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from router_proxy.config.load import load_config_text
from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.server.app import create_app
from tests.support.logs import log_line
from tests.support.serving import ServerThread

POLICY = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
  claude: {type: anthropic, base_url: "${UPSTREAM}", api_key: k}
  local: {type: mock}
models:
  coder: {provider: up, upstream_model: coder-1, cost: {input_per_mtok: 2, output_per_mtok: 4}}
  broken: {provider: up, upstream_model: fail-500}
  embedder: {provider: up, upstream_model: embed-1, cost: {input_per_mtok: 1000}}
  sonnet: {provider: claude}
  mocked: {provider: local}
signals:
  - {name: code, type: keyword, any: [python]}
  - {name: anthropic-only, type: header, headers: {x-team: claude}}
decisions:
  - {name: claude-team, priority: 30, when: anthropic-only, route: {candidates: [sonnet]}}
  - {name: coding, priority: 20, when: code, route: {candidates: [broken, sonnet, coder]}}
  - {name: default, when: true, route: {candidates: [coder]}}
"""


class Upstream:
    """An OpenAI-compatible server answering text completions and embeddings."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            ]
        )

    async def completions(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.bodies.append((request.url.path, body))
        if body["model"] == "fail-500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        base = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": body["model"]}
        words = ["def", " reverse(xs):", " return", " xs[::-1]"]
        usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        if not body.get("stream"):
            choice = {"index": 0, "text": "".join(words), "finish_reason": "stop", "logprobs": None}
            return JSONResponse(base | {"choices": [choice], "usage": usage})

        async def events() -> AsyncIterator[bytes]:
            for i, word in enumerate(words):
                finish = "stop" if i == len(words) - 1 else None
                choice = {"index": 0, "text": word, "finish_reason": finish, "logprobs": None}
                yield b"data: " + orjson.dumps(base | {"choices": [choice]}) + b"\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                yield b"data: " + orjson.dumps(base | {"choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def embeddings(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.bodies.append((request.url.path, body))
        inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
        size = body.get("dimensions") or 3
        data = []
        for i, text in enumerate(inputs):
            vector = [float(len(text))] + [0.5] * (size - 1)
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(len(str(t).split()) for t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    fake = Upstream()
    with ServerThread(fake.app()) as server:
        fake.base_url = server.base_url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture(scope="module")
def gateway(upstream: Upstream) -> Iterator[str]:
    env = {"UPSTREAM": upstream.base_url}  # type: ignore[attr-defined]
    config, _ = load_config_text(POLICY, env=env)
    with ServerThread(create_app(config)) as server:
        yield server.base_url


@pytest.fixture
def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)


def test_a_text_completion_is_routed_and_passed_through(
    client: openai.OpenAI, upstream: Upstream
) -> None:
    raw = client.completions.with_raw_response.create(
        model="auto", prompt="def reverse", suffix="\n", max_tokens=16
    )
    completion = raw.parse()
    assert completion.choices[0].text == "def reverse(xs): return xs[::-1]"
    assert raw.headers["x-router-decision"] == "default"
    assert raw.headers["x-router-model"] == "coder"
    assert raw.request_id == raw.headers["x-router-request-id"]
    path, body = upstream.bodies[-1]
    assert path == "/v1/completions"
    assert body["model"] == "coder-1"  # the model's upstream name; the rest as sent
    assert (body["prompt"], body["suffix"], body["max_tokens"]) == ("def reverse", "\n", 16)


def test_a_streamed_text_completion_hides_the_usage_chunk_it_was_not_asked_for(
    client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        chunks = list(client.completions.create(model="coder", prompt="def f", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "def reverse(xs): return xs[::-1]"
    assert all(c.choices for c in chunks)  # no usage-only chunk reached the client
    line = log_line(caplog)
    assert line["surface"] == "completions"
    assert (line["prompt_tokens"], line["completion_tokens"]) == (5, 4)  # counted all the same
    assert line["cost_usd"] == pytest.approx((5 * 2 + 4 * 4) / 1e6)


def test_completions_fall_back_past_a_failing_model_and_one_that_cannot_serve_them(
    client: openai.OpenAI, upstream: Upstream
) -> None:
    """coding's candidates: broken (500), sonnet (Anthropic: no text completions), coder."""
    raw = client.completions.with_raw_response.create(model="auto", prompt="# python: sort")
    assert raw.parse().choices[0].text
    assert raw.headers["x-router-decision"] == "coding"
    assert raw.headers["x-router-model"] == "coder"
    assert [b["model"] for _, b in upstream.bodies[-2:]] == ["fail-500", "coder-1"]


def test_a_decision_that_cannot_serve_the_endpoint_answers_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="auto", prompt="hi", extra_headers={"x-team": "claude"})
    assert caught.value.code == "unsupported_endpoint"
    assert "claude-team" in caught.value.message


def test_embeddings_pass_through_and_cost_the_input_price(
    client: openai.OpenAI, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        raw = client.embeddings.with_raw_response.create(
            model="embedder", input=["one two", "three"], dimensions=4
        )
    result = raw.parse()  # the SDK asks for base64 and decodes it
    assert [len(d.embedding) for d in result.data] == [4, 4]
    assert result.data[0].embedding[0] == pytest.approx(7.0)
    assert raw.headers["x-router-model"] == "embedder"
    path, body = upstream.bodies[-1]
    assert (path, body["dimensions"], body["encoding_format"]) == ("/v1/embeddings", 4, "base64")
    line = log_line(caplog, raw.request_id)
    assert (line["surface"], line["prompt_tokens"]) == ("embeddings", 3)
    assert line["cost_usd"] == pytest.approx(3 * 1000 / 1e6)


def test_the_mock_serves_deterministic_embeddings_and_completions(client: openai.OpenAI) -> None:
    first = client.embeddings.create(model="mocked", input="hello")
    again = client.embeddings.create(model="mocked", input="hello", encoding_format="float")
    other = client.embeddings.create(model="mocked", input="goodbye")
    assert first.data[0].embedding == pytest.approx(again.data[0].embedding)
    assert first.data[0].embedding != pytest.approx(other.data[0].embedding)
    assert sum(v * v for v in first.data[0].embedding) == pytest.approx(1.0, rel=1e-4)
    text = client.completions.create(model="mocked", prompt="say hi").choices[0].text
    assert "say hi" in text
    streamed = client.completions.create(model="mocked", prompt="say hi", stream=True)
    assert "".join(c.choices[0].text for c in streamed) == text


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"model": "auto"}, "prompt"),
        ("/v1/completions", {"model": "auto", "prompt": 5}, "prompt"),
        ("/v1/embeddings", {"model": "embedder", "input": {"a": 1}}, "input"),
        ("/v1/embeddings", {"model": "embedder", "input": []}, "input"),
        ("/v1/embeddings", {"model": "embedder", "input": "x", "stream": True}, "stream"),
        ("/v1/embeddings", {"model": "embedder", "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_bad_bodies_are_400s_naming_the_field(
    gateway: str, path: str, body: dict[str, Any], param: str
) -> None:
    answer = httpx.post(gateway + path, json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("query", "body", "decision"),
    [
        ("", {"model": "auto", "prompt": "# python: sort a list"}, "coding"),
        ("?surface=embeddings", {"model": "auto", "input": "python"}, "coding"),
        ("", {"model": "auto", "input": "a python question"}, "coding"),  # Responses
        # A text prompt is a completion's, whatever else the body carries.
        ("", {"model": "auto", "prompt": "# python: sort", "input": "hello"}, "coding"),
        (
            "",  # Messages: recognised by its system field
            {
                "model": "auto",
                "max_tokens": 9,
                "system": "x",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "python?"}]}],
            },
            "coding",
        ),
        ("", {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}, "default"),
    ],
)
def test_the_dry_run_reads_every_surfaces_body(
    gateway: str, query: str, body: dict[str, Any], decision: str
) -> None:
    plan = httpx.post(gateway + "/v1/route" + query, json=body)
    assert plan.status_code == 200, plan.text
    assert plan.json()["decision"] == decision


def test_the_dry_run_refuses_an_unknown_surface(gateway: str) -> None:
    answer = httpx.post(gateway + "/v1/route?surface=fax", json={"model": "auto"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "surface"


def test_answers_and_errors_carry_the_sdks_request_id(client: openai.OpenAI, gateway: str) -> None:
    raw = client.embeddings.with_raw_response.create(model="embedder", input="x")
    assert raw.request_id == raw.headers["x-router-request-id"]  # the SDK's request_id
    error = httpx.post(gateway + "/v1/completions", json={"model": "auto"})
    assert error.headers["x-request-id"] == error.headers["x-router-request-id"]
