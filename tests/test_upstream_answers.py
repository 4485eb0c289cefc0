"""Upstream answers are checked, not trusted (issue 19, items 4 and 5): a success status
whose body is not an answer for its API, and a redirect, are the upstream's failures
(fallback, counted against the model, 502 when nothing is left); a malformed ``usage`` is
ignored, said once per model, and never breaks the answer, the metrics or the stream's
accounting. A real gateway (uvicorn on loopback) in front of ``BadUpstream``, a real
server that answers 200 with what no API would."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from router_proxy.config.load import load_config, load_config_text
from router_proxy.engine.record import RequestRecord
from router_proxy.protocol import MAX_USAGE_TOKENS, Usage
from router_proxy.providers import http_provider
from router_proxy.runtime import Runtime
from router_proxy.server.app import create_app
from tests.support.bad_upstream import COMPLETION_TOKENS, PROMPT_TOKENS, TEXT, BadUpstream
from tests.support.logs import log_line
from tests.support.serving import ServerThread

ADMIN = "admin-key-for-tests"
CHAT = [{"role": "user", "content": "hello"}]
NOT_ANSWERS = ["error-200", "array-200", "empty-200", "redirect"]
BAD_USAGE = ["usage-string", "usage-list", "usage-negative", "usage-huge"]
NAMES = [
    *NOT_ANSWERS,
    *BAD_USAGE,
    "huge-200",
    "stream-json",
    "stream-usage-negative",
    "stream-usage-string",
]


def policy(upstream: str, breaker: str = "{failures: 1000}", candidates: str = "[ok]") -> str:
    """``NAME`` (chat API, falls back to ``ok``), ``ant-NAME`` (Anthropic, to ``ok-ant``)
    and ``alone-NAME`` (no fallback) for every behaviour of the bad upstream."""
    models = [
        "  ok: {provider: bad, upstream_model: ok}",
        "  ok-ant: {provider: ant, upstream_model: ok}",
    ]
    for name in NAMES:
        models += [
            f"  {name}: {{provider: bad, upstream_model: {name}, fallbacks: [ok]}}",
            f"  ant-{name}: {{provider: ant, upstream_model: {name}, fallbacks: [ok-ant]}}",
            f"  alone-{name}: {{provider: bad, upstream_model: {name}}}",
        ]
    return f"""\
server: {{admin_keys: [{ADMIN}]}}
providers:
  bad: {{type: openai, base_url: "{upstream}/v1", responses_api: true}}
  ant: {{type: anthropic, base_url: "{upstream}", api_key: k}}
models:
{chr(10).join(models)}
resilience: {{breaker: {breaker}}}
decisions:
  - {{name: default, when: true, route: {{candidates: {candidates}}}}}
"""


@pytest.fixture(scope="module")
def up() -> Iterator[BadUpstream]:
    with BadUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(up: BadUpstream) -> Iterator[str]:
    config, _ = load_config_text(policy(up.base_url), env={})
    with ServerThread(create_app(config)) as server:
        yield server.base_url


@pytest.fixture
def sdk(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def claude(gateway: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway, api_key="unused", max_retries=0)


def metric(gateway: str, series: str) -> float:
    for line in httpx.get(gateway + "/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


# --- item 4: a success status that is not an answer -----------------------------------


@pytest.mark.parametrize("bad", NOT_ANSWERS)
def test_a_success_that_is_not_a_chat_completion_falls_back(sdk: openai.OpenAI, bad: str) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model=bad, messages=CHAT)
    assert raw.parse().choices[0].message.content == TEXT
    assert raw.headers["x-router-model"] == "ok"
    assert raw.headers["x-router-attempts"] == "2"


@pytest.mark.parametrize("bad", NOT_ANSWERS)
def test_text_completions_and_embeddings_fall_back_too(sdk: openai.OpenAI, bad: str) -> None:
    completion = sdk.completions.with_raw_response.create(model=bad, prompt="hello")
    assert completion.parse().choices[0].text == TEXT
    assert completion.headers["x-router-model"] == "ok"
    embedding = sdk.embeddings.with_raw_response.create(model=bad, input="hello")
    assert embedding.parse().data[0].embedding == [0.25, -0.5]
    assert embedding.headers["x-router-model"] == "ok"


@pytest.mark.parametrize("bad", NOT_ANSWERS)
def test_native_messages_and_responses_fall_back_too(
    sdk: openai.OpenAI, claude: anthropic.Anthropic, bad: str
) -> None:
    message = claude.messages.with_raw_response.create(
        model=f"ant-{bad}", max_tokens=16, messages=[{"role": "user", "content": "hello"}]
    )
    assert message.parse().content[0].text == TEXT  # type: ignore[union-attr]
    assert message.headers["x-router-model"] == "ok-ant"
    response = sdk.responses.with_raw_response.create(model=bad, input="hello")
    assert response.parse().output_text == TEXT
    assert response.headers["x-router-model"] == "ok"


@pytest.mark.parametrize("bad", NOT_ANSWERS)
def test_with_no_candidate_left_it_is_a_502_not_a_success(sdk: openai.OpenAI, bad: str) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model=f"alone-{bad}", messages=CHAT)
    assert info.value.status_code == 502
    error = info.value.response.json()["error"]
    assert error["type"] == "upstream_error"
    assert f"alone-{bad}" in error["message"]


def test_an_answer_over_the_size_cap_fails_the_call_and_falls_back(
    sdk: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The upstream sends 4 MiB with no length declared; the gateway stops at its cap.
    monkeypatch.setattr(http_provider, "MAX_ANSWER_BYTES", 1024 * 1024)
    response = sdk.chat.completions.with_raw_response.create(model="huge-200", messages=CHAT)
    assert response.headers["x-router-model"] == "ok"
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="alone-huge-200", messages=CHAT)
    assert info.value.status_code == 502
    assert "more than 1 MiB" in info.value.response.json()["error"]["message"]


def test_the_upstreams_error_message_is_kept(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError, match="quota exceeded upstream"):
        sdk.chat.completions.create(model="alone-error-200", messages=CHAT)


def test_a_redirect_is_never_followed(sdk: openai.OpenAI, up: BadUpstream) -> None:
    before = len(up.requests)
    with pytest.raises(openai.APIStatusError, match=r"redirect \(307\), not followed"):
        sdk.chat.completions.create(model="alone-redirect", messages=CHAT)
    assert up.requests[before:] == [("/v1/chat/completions", "redirect")]


def test_a_stream_request_answered_with_json_falls_back(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="stream-json", messages=CHAT, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == TEXT
    assert raw.headers["x-router-model"] == "ok"


def test_the_failure_counts_against_the_model_not_as_its_success(
    sdk: openai.OpenAI, gateway: str
) -> None:
    errors = 'router_upstream_errors_total{code="upstream_error",model="error-200"}'
    served = 'router_requests_total{decision="direct",model="error-200",status="200"}'
    before = metric(gateway, errors)
    for _ in range(3):
        sdk.chat.completions.create(model="error-200", messages=CHAT)
    assert metric(gateway, errors) == before + 3
    assert metric(gateway, served) == 0  # answered by "ok": never a success of this one


def test_the_breaker_opens_on_answers_that_are_not_answers(up: BadUpstream) -> None:
    text = policy(up.base_url, "{failures: 2, cooldown: 60}", "[alone-array-200, ok]")
    config, _ = load_config_text(text, env={})
    with ServerThread(create_app(config)) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="-", max_retries=0)
        attempts = []
        for _ in range(20):  # bounded: opens after a few failures however it counts them
            raw = client.chat.completions.with_raw_response.create(model="auto", messages=CHAT)
            assert raw.headers["x-router-model"] == "ok"
            attempts.append(raw.headers["x-router-attempts"])
            if attempts[-1] == "1":
                break
        admin = {"authorization": f"Bearer {ADMIN}"}
        health = httpx.get(server.base_url + "/admin/models", headers=admin).json()
    assert attempts[0] == "2"
    assert attempts[-1] == "1"  # skipped: its breaker is open
    assert health["models"]["alone-array-200"]["breaker"] == "open"


# --- item 5: malformed usage ----------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_USAGE)
def test_malformed_usage_is_ignored_and_said_once_per_model(
    sdk: openai.OpenAI, gateway: str, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tokens = f'router_tokens_total{{kind="prompt",model="{bad}"}}'
    for _ in range(2):
        raw = sdk.chat.completions.with_raw_response.create(model=bad, messages=CHAT)
        assert raw.parse().choices[0].message.content == TEXT
        assert raw.headers["x-router-model"] == bad  # a good answer: no fallback
        line = log_line(caplog, raw.headers["x-request-id"])
        assert (line["status"], line["prompt_tokens"], line["error"]) == (200, None, None)
    assert metric(gateway, tokens) == 0
    said = [r for r in caplog.records if "malformed usage" in r.getMessage()]
    assert len(said) == 1
    assert f"model '{bad}'" in said[0].getMessage()


@pytest.mark.parametrize("bad", BAD_USAGE)
def test_malformed_usage_on_every_api_and_provider(
    sdk: openai.OpenAI, claude: anthropic.Anthropic, bad: str
) -> None:
    assert sdk.completions.create(model=bad, prompt="hi").choices[0].text == TEXT
    assert sdk.embeddings.create(model=bad, input="hi").data[0].embedding == [0.25, -0.5]
    assert sdk.responses.create(model=bad, input="hi").output_text == TEXT  # native
    translated = sdk.chat.completions.create(model=f"ant-{bad}", messages=CHAT)
    assert translated.choices[0].message.content == TEXT
    assert translated.usage is None  # left out, not passed on malformed
    native = claude.messages.create(
        model=f"ant-{bad}", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert native.content[0].text == TEXT  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["stream-usage-negative", "stream-usage-string"])
def test_a_stream_with_malformed_usage_completes(
    sdk: openai.OpenAI, gateway: str, bad: str
) -> None:
    for model in (bad, f"ant-{bad}"):
        chunks = list(sdk.chat.completions.create(model=model, messages=CHAT, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    events = list(sdk.responses.create(model=bad, input="hi", stream=True))
    assert events[-1].type == "response.completed"
    # Native Messages events go to the client as the upstream sent them, usage included
    # (the gateway only leaves it out of its own accounting).
    body = {"model": f"ant-{bad}", "max_tokens": 16, "stream": True, "messages": CHAT}
    answer = httpx.post(gateway + "/v1/messages", json=body)
    assert answer.status_code == 200
    assert answer.text.rstrip().endswith('data: {"type": "message_stop"}')
    assert "event: error" not in answer.text


def test_usage_counts_are_read_strictly() -> None:
    from router_proxy.protocol import MalformedUsage, usage_object, usage_tokens

    assert usage_tokens({"n": 12}, "n") == 12
    assert usage_tokens({"n": 12.0}, "n") == 12
    assert usage_tokens({}, "n") == usage_tokens({"n": None}, "n") == 0
    for bad in (-1, "12", [1], True, 1.5, MAX_USAGE_TOKENS + 1, float("nan")):
        with pytest.raises(MalformedUsage):
            usage_tokens({"n": bad}, "n")
    assert usage_object(None) is None
    for bad in ("ten", [1, 2], 5):
        with pytest.raises(MalformedUsage):
            usage_object(bad)


# --- item 5: whatever breaks while reading an answer is the upstream's failure ----------


def test_any_error_reading_an_answer_falls_back(
    sdk: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from router_proxy.providers import openai as provider

    usage = provider._usage

    def breaks_on_one_model(data: dict[str, object]) -> Usage | None:
        if data.get("model") == "usage-list":  # the answer names the upstream model
            raise KeyError("a reader's bug")
        return usage(data)

    monkeypatch.setattr(provider, "_usage", breaks_on_one_model)
    caplog.set_level(logging.WARNING, logger="router_proxy.engine")
    raw = sdk.chat.completions.with_raw_response.create(model="usage-list", messages=CHAT)
    assert raw.headers["x-router-model"] == "ok"  # not a 500: the next candidate answered
    assert raw.headers["x-router-attempts"] == "2"
    assert any("could not be read" in r.getMessage() for r in caplog.records)


def test_any_error_reading_a_stream_after_its_first_byte_is_the_error_event(
    gateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from router_proxy.providers import http_provider
    from router_proxy.providers import openai as provider

    inspect, blocks, calls = provider._inspect, http_provider.event_blocks, []

    async def one_event_a_block(*args: Any) -> AsyncIterator[bytes]:
        async for block in blocks(*args):
            for event in block.split(b"\n\n")[:-1]:
                yield event + b"\n\n"

    def breaks_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise KeyError("a reader's bug")
        return inspect(*args, **kwargs)

    monkeypatch.setattr(http_provider, "event_blocks", one_event_a_block)  # what streams read
    monkeypatch.setattr(provider, "_inspect", breaks_second)
    body = {"model": "ok", "messages": CHAT, "stream": True}
    text = httpx.post(gateway + "/v1/chat/completions", json=body).text
    last = text.strip().split("\n\n")[-1]
    assert "could not read" in last
    assert '"type":"upstream_error"' in last
    assert "data: [DONE]" not in text


# --- item 5: accounting never raises out of a stream's finally ---------------------------


@pytest.fixture
def reloadable(up: BadUpstream, tmp_path: Path) -> Iterator[tuple[str, Callable[[], Runtime]]]:
    path = tmp_path / "policy.yaml"
    path.write_text(policy(up.base_url))
    config, _ = load_config(path)
    app = create_app(config, config_path=path)
    with ServerThread(app) as server:
        yield server.base_url, lambda: app.state.slot.current


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_negative_stream_usage_leaves_no_request_in_flight_and_the_runtime_closable(
    reloadable: tuple[str, Callable[[], Runtime]], path: str
) -> None:
    base_url, current = reloadable
    first = current()
    body = {"model": "ant-stream-usage-negative", "stream": True, "max_tokens": 16}
    body["messages"] = [{"role": "user", "content": "hi"}]
    for model in ("stream-usage-negative", "ant-stream-usage-negative"):
        with httpx.stream("POST", base_url + path, json=body | {"model": model}) as r:
            text = r.read().decode()
        assert r.status_code == 200
        assert "error" not in text
    assert metric(base_url, "router_requests_in_flight") == 0
    assert first.in_flight == 0
    reloaded = httpx.post(base_url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
    assert reloaded.status_code == 200
    deadline = time.monotonic() + 10
    while first.started and time.monotonic() < deadline:  # closes once its last request left
        time.sleep(0.02)
    assert current() is not first
    assert not first.started


def test_accounting_logs_what_it_cannot_count_instead_of_raising(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = load_config_text(
        "providers: {m: {type: mock}}\nmodels: {a: {provider: m}}\n"
        "decisions: [{name: d, when: true, route: {candidates: [a]}}]\n",
        env={},
    )
    accounting = Runtime.build(config).engine.accounting
    record = RequestRecord("r-1", "chat", "POST", "/v1/chat/completions")
    record.attempts.model = "a"  # answered by "a": its tokens and cost are counted
    record.usage = Usage(prompt_tokens=-5, completion_tokens=-7)  # as no reader lets through
    accounting.finish(record, 200)  # the metrics refuse no negative step
    monkeypatch.setattr(accounting.metrics, "record", _broken)
    caplog.set_level(logging.ERROR, logger="router_proxy.engine")
    accounting.finish(record, 200)
    assert any("accounting failed" in r.getMessage() for r in caplog.records)


def _broken(*args: object) -> None:
    raise ValueError("Counters can only be incremented by non-negative amounts.")


def test_the_bad_upstream_answers_well_when_asked_to(sdk: openai.OpenAI) -> None:
    """The fixture itself: its ``ok`` is a valid answer with usage."""
    answer = sdk.chat.completions.create(model="ok", messages=CHAT)
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
    )
