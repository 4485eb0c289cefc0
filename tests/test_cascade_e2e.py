"""End to end: the official OpenAI SDK -> ``router-proxy serve`` (its own process, a real
port) with a cascade and an aggregate decision -> a real upstream whose models have known
skills (tests/support/skilled_upstream.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.skilled_upstream import PROMPT_TOKENS, SkilledUpstream

POLICY = """\
providers:
  up: {{type: openai, base_url: "{upstream}/v1"}}
models:
  cheap-a: {{provider: up, cost: {{input_per_mtok: 1000, output_per_mtok: 2000}}}}
  cheap-b: {{provider: up, cost: {{input_per_mtok: 1000, output_per_mtok: 2000}}}}
  expensive: {{provider: up, cost: {{input_per_mtok: 100000, output_per_mtok: 200000}}}}
  refiner: {{provider: up}}
decisions:
  - name: panel
    when: false
    route:
      algorithm: aggregate
      params: {{models: [cheap-a, cheap-b], combine: refine, refiner: {{model: refiner}}}}
  - name: cascade
    when: true
    route: {{algorithm: cascade, params: {{stages: [[cheap-a, cheap-b], [expensive]]}}}}
"""
EASY = [{"role": "user", "content": "easy: what is 2 + 2?"}]
HARD = [{"role": "user", "content": "hard: what is the twelfth number?"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with SkilledUpstream() as upstream:
        policy = POLICY.format(upstream=upstream.base_url)
        process = GatewayProcess(policy, tmp_path_factory.mktemp("cascade"))
        process.start()
        try:
            yield process
        finally:
            process.stop()


@pytest.fixture
def sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused", max_retries=0)


def test_easy_stays_cheap_and_hard_escalates(sdk: openai.OpenAI) -> None:
    easy = sdk.chat.completions.with_raw_response.create(model="auto", messages=EASY)
    assert easy.headers["x-router-calls"] == "cheap-a:answered,cheap-b:agreed"
    assert easy.parse().choices[0].message.content == "The answer is 4."
    hard = sdk.chat.completions.with_raw_response.create(model="auto", messages=HARD)
    assert hard.headers["x-router-model"] == "expensive"
    assert hard.headers["x-router-calls"] == (
        "cheap-a:agree-fail,cheap-b:agree-fail,expensive:answered"
    )
    completion = hard.parse()
    assert completion.choices[0].message.content == "The answer is 12."
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3 * PROMPT_TOKENS


def test_streams_through_the_sdk(sdk: openai.OpenAI) -> None:
    for messages, expected in ((EASY, "The answer is 4."), (HARD, "The answer is 12.")):
        stream = sdk.chat.completions.create(
            model="auto", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == expected
        usage = chunks[-1].usage
        assert usage is not None
        assert usage.prompt_tokens >= 2 * PROMPT_TOKENS  # every call's


def test_aggregate_refines_and_the_log_line_shows_the_calls(
    sdk: openai.OpenAI, gateway: GatewayProcess
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="panel", messages=HARD)
    assert raw.headers["x-router-model"] == "refiner"
    assert raw.parse().choices[0].message.content == "The answer is 12."
    request_id = raw.headers["x-router-request-id"]
    responses = sdk.responses.create(model="auto", input="hard: what is the twelfth number?")
    assert responses.output_text == "The answer is 12."
    line = _request_line(gateway, request_id)
    assert line["calls"] == "cheap-a:candidate,cheap-b:candidate,refiner:answered"
    assert line["stages"] == 2
    assert line["calls_count"] == 3


def _request_line(gateway: GatewayProcess, request_id: str) -> dict[str, Any]:
    """The request's log line; the writer thread flushes lines within a moment, after the
    answer has gone, so wait for it."""
    deadline = time.monotonic() + 10
    while True:
        for text in gateway.output().splitlines():
            if text.startswith("{") and request_id in text:
                entry: dict[str, Any] = json.loads(text)
                if entry.get("event") == "request":
                    return entry
        assert time.monotonic() < deadline, f"no log line for {request_id}"
        time.sleep(0.05)


def test_metrics_count_calls_per_request(sdk: openai.OpenAI, gateway: GatewayProcess) -> None:
    sdk.chat.completions.create(model="auto", messages=HARD)
    text = httpx.get(gateway.base_url + "/metrics", timeout=5).text
    assert 'router_multicall_calls_count{decision="cascade"}' in text
    assert 'router_multicall_stage_reached_total{decision="cascade",stage="2"}' in text


def test_the_anthropic_sdk_gets_a_cascade_as_one_message(gateway: GatewayProcess) -> None:
    """Claude Code's way in: the official anthropic SDK on /v1/messages, whole and
    streamed; the cascade answers as one Messages reply with every call's usage."""
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key="unused", max_retries=0)
    easy = client.messages.with_raw_response.create(
        model="auto", max_tokens=50, messages=[{"role": "user", "content": EASY[0]["content"]}]
    )
    assert easy.headers["x-router-calls"] == "cheap-a:answered,cheap-b:agreed"
    message = easy.parse()
    assert [block.text for block in message.content if block.type == "text"] == ["The answer is 4."]
    assert message.usage.input_tokens == 2 * PROMPT_TOKENS
    hard = [{"role": "user", "content": HARD[0]["content"]}]
    with client.messages.stream(model="auto", max_tokens=50, messages=hard) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "The answer is 12."  # the last stage, streamed live
    assert final.stop_reason == "end_turn"
