"""A surface's body goes untranslated to a provider that speaks its wire format: Messages
to an Anthropic upstream, Responses to an upstream marked ``responses_api: true``; the
answer (or the stream's events) comes back as the upstream sent it, and the walk is the
same: routing, fallback (to a translated candidate too), usage, cost and the log line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
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
from tests.support.upstream import PROMPT_TOKENS, FakeUpstream

POLICY = """\
providers:
  ant: {type: anthropic, base_url: "${UPSTREAM}", api_key: k}
  chat: {type: openai, base_url: "${UPSTREAM}/v1"}
  native: {type: openai, base_url: "${RESPONSES}/v1", responses_api: true}
models:
  claude: {provider: ant, upstream_model: echo, cost: {input_per_mtok: 3, output_per_mtok: 15}}
  claude-broken: {provider: ant, upstream_model: fail-500}
  gpt-chat: {provider: chat, upstream_model: echo}
  gpt-native: {provider: native, upstream_model: resp-1}
signals:
  - {name: fallback, type: keyword, any: [fallback]}
  - {name: responses, type: header, headers: {x-api: responses}}
decisions:
  - {name: falls, priority: 20, when: fallback, route: {candidates: [claude-broken, gpt-chat]}}
  - {name: resp, priority: 10, when: responses, route: {candidates: [gpt-native]}}
  - {name: default, when: true, route: {candidates: [claude]}}
"""
USAGE = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}


class ResponsesUpstream:
    """Speaks the Responses API: one text answer, plain or as its typed events."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/responses", self.responses, methods=["POST"])])

    def response(self, model: str) -> dict[str, Any]:
        text = {"type": "output_text", "text": "native hello", "annotations": []}
        item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed"}
        return {
            "id": "resp_up_1",
            "object": "response",
            "created_at": 1,
            "status": "completed",
            "model": model,
            "output": [item | {"content": [text]}],
            "usage": USAGE,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }

    async def responses(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.bodies.append(body)
        if not body.get("stream"):
            return JSONResponse(self.response(body["model"]))
        done = self.response(body["model"])

        def event(kind: str, payload: dict[str, Any], n: int) -> bytes:
            data = orjson.dumps({"type": kind, "sequence_number": n} | payload)
            return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            created = done | {"status": "in_progress", "output": [], "usage": None}
            yield event("response.created", {"response": created}, 0)
            item = done["output"][0] | {"content": [], "status": "in_progress"}
            yield event("response.output_item.added", {"output_index": 0, "item": item}, 1)
            where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
            part = {"type": "output_text", "text": "", "annotations": []}
            yield event("response.content_part.added", where | {"part": part}, 2)
            for n, piece in enumerate(("native", " hello"), 3):
                yield event("response.output_text.delta", where | {"delta": piece}, n)
            yield event("response.completed", {"response": done}, 5)

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, FakeUpstream, ResponsesUpstream]]:
    native = ResponsesUpstream()
    with FakeUpstream() as upstream, ServerThread(native.app()) as responses:
        env = {"UPSTREAM": upstream.base_url, "RESPONSES": responses.base_url}
        config, _ = load_config_text(POLICY, env=env)
        with ServerThread(create_app(config)) as gateway:
            yield gateway.base_url, upstream, native


def _sent(upstream: FakeUpstream, path: str) -> Any:
    return next(body for p, _, body in reversed(upstream.requests) if p == path)


MESSAGE = {
    "model": "auto",
    "max_tokens": 64,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": "hello there"}],
}


def test_messages_go_to_an_anthropic_upstream_as_sent(
    servers: tuple[str, FakeUpstream, ResponsesUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    base, upstream, _ = servers
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    answer = httpx.post(base + "/v1/messages", json=MESSAGE)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-router-model"] == "claude"
    assert _sent(upstream, "/v1/messages") == MESSAGE | {"model": "echo", "stream": False}
    assert answer.json()["id"] == "msg_fake_1"  # the upstream's own message
    line = log_line(caplog, answer.headers["x-router-request-id"])
    assert (line["surface"], line["prompt_tokens"], line["completion_tokens"]) == (
        "messages",
        PROMPT_TOKENS,
        3,  # "echo: hello there": the upstream's own usage
    )
    assert line["cost_usd"] == pytest.approx((PROMPT_TOKENS * 3 + 3 * 15) / 1e6)
    assert line["dropped"] is None  # the native call kept the thinking budget


def test_a_native_messages_stream_is_the_upstreams_own_events(
    servers: tuple[str, FakeUpstream, ResponsesUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    base, upstream, _ = servers
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    client = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0)
    with client.messages.stream(
        model="auto", max_tokens=64, messages=[{"role": "user", "content": "hello there"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    assert final.id == "msg_fake_1"
    assert final.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    assert _sent(upstream, "/v1/messages")["stream"] is True
    line = log_line(caplog)
    assert (line["surface"], line["completion_tokens"], line["error"]) == ("messages", 3, None)


def test_a_native_call_that_fails_falls_back_to_a_translated_one(
    servers: tuple[str, FakeUpstream, ResponsesUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    """claude-broken (Anthropic, 500) then gpt-chat (OpenAI chat): the Messages request is
    translated for the second, and the answer translated back; the log line names what
    the translation left out."""
    base, upstream, _ = servers
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    body = MESSAGE | {"messages": [{"role": "user", "content": "try the fallback"}]}
    answer = httpx.post(base + "/v1/messages", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-router-model"] == "gpt-chat"
    assert answer.json()["content"][0]["text"] == "echo: try the fallback"
    sent = _sent(upstream, "/v1/chat/completions")
    assert sent["messages"][-1] == {"role": "user", "content": "try the fallback"}
    assert log_line(caplog, answer.headers["x-router-request-id"])["dropped"] == ["thinking"]


def test_responses_go_to_an_upstream_that_speaks_them(
    servers: tuple[str, FakeUpstream, ResponsesUpstream],
) -> None:
    base, _, native = servers
    client = openai.OpenAI(
        base_url=base + "/v1",
        api_key="unused",
        max_retries=0,
        default_headers={"x-api": "responses"},
    )
    raw = client.responses.with_raw_response.create(
        model="auto", input="hi", instructions="Be brief.", store=False
    )
    response = raw.parse()
    assert response.output_text == "native hello"
    assert response.id == "resp_up_1"
    assert raw.headers["x-router-model"] == "gpt-native"
    assert native.bodies[-1] == {
        "model": "resp-1",
        "input": "hi",
        "instructions": "Be brief.",
        "store": False,
        "stream": False,
    }
    with client.responses.stream(model="auto", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "native hello"
    assert final.usage is not None
    assert final.usage.total_tokens == 10
