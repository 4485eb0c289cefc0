"""Retries, fallback, breakers, timeouts and limits through a real gateway in front of a
real upstream that fails on demand, driven by the official OpenAI SDK."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory
from tests.support.upstream import FakeUpstream, ResettingServer

ADMIN = "admin-key-for-tests"
CHAT = [{"role": "user", "content": "hello there friend"}]


@pytest.fixture(scope="module")
def resetting() -> Iterator[ResettingServer]:
    with ResettingServer() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(make_gateway: GatewayFactory, resetting: ResettingServer) -> str:
    return make_gateway(
        f"""\
server: {{admin_keys: [{ADMIN}]}}
providers:
  up: {{type: openai, base_url: "${{UPSTREAM}}/v1"}}
  dead: {{type: openai, base_url: "{resetting.base_url}/v1"}}
models:
  echo: {{provider: up, upstream_model: echo}}
  broken: {{provider: up, upstream_model: fail-500}}
  cut: {{provider: up, upstream_model: cut-stream}}
  torn: {{provider: up, upstream_model: cut-stream}}
  flaky: {{provider: up, upstream_model: script-flaky}}
  shaky: {{provider: up, upstream_model: script-shaky}}
  gone: {{provider: dead, fallbacks: [echo]}}
  stuck: {{provider: up, upstream_model: hang, timeouts: {{first_byte: 0.3, total: 5}},
          fallbacks: [echo]}}
  refusing: {{provider: up, upstream_model: fail-400}}
resilience:
  retries: {{backoff_initial: 0.01, backoff_max: 0.02}}
  breaker: {{failures: 2, window: 60, cooldown: 60}}
decisions:
  - {{name: to-echo, when: true, route: {{candidates: [broken, echo]}}}}
  - {{name: shaky-first, route: {{candidates: [shaky, echo]}}, when: false}}
  - {{name: refusing-first, route: {{candidates: [refusing, echo]}}, when: false}}
  - {{name: cut-first, route: {{candidates: [cut, echo]}}, when: false}}
  - {{name: torn-first, route: {{candidates: [torn, echo]}}, when: false}}
"""
    )


@pytest.fixture
def sdk(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)


def metric(gateway: str, series: str) -> float:
    for line in httpx.get(gateway + "/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_a_failing_first_candidate_is_answered_by_the_next(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=CHAT)
    assert raw.parse().choices[0].message.content == "echo: hello there friend"
    assert raw.headers["x-router-model"] == "echo"
    assert raw.headers["x-router-attempts"] == "2"
    assert raw.headers["x-router-decision"] == "to-echo"


def test_a_stream_falls_back_before_its_first_byte(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=CHAT, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text == "echo: hello there friend"
    assert raw.headers["x-router-model"] == "echo"


def test_a_stream_cut_after_its_first_byte_ends_with_an_error_event_not_a_fallback(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    before = len(upstream.requests)
    stream = sdk.chat.completions.create(
        model="cut-first", messages=[{"role": "user", "content": "one two three four"}], stream=True
    )
    with pytest.raises(openai.APIError, match="unreachable"):
        for _ in stream:
            pass
    models = [body["model"] for _, _, body in upstream.requests[before:]]
    assert models == ["cut-stream"]  # the client already had bytes: no second answer


def test_retryable_status_retries_the_same_model(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.scripts["flaky"].extend(["fail-503"])
    raw = sdk.chat.completions.with_raw_response.create(model="flaky", messages=CHAT)
    assert raw.headers["x-router-model"] == "flaky"
    assert raw.headers["x-router-attempts"] == "2"
    assert upstream.calls["flaky"] == 2


def test_connection_resets_are_retried_then_the_models_fallbacks_answer(
    sdk: openai.OpenAI, resetting: ResettingServer
) -> None:
    before = resetting.accepted
    raw = sdk.chat.completions.with_raw_response.create(model="gone", messages=CHAT)
    assert raw.headers["x-router-model"] == "echo"
    assert raw.headers["x-router-attempts"] == "3"
    assert resetting.accepted - before == 2  # tried twice (a reset is retryable), then echo


def test_first_byte_timeout_moves_on_to_the_fallback(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="stuck", messages=CHAT)
    assert raw.headers["x-router-model"] == "echo"
    assert raw.headers["x-router-attempts"] == "2"


def test_client_errors_are_not_retried_or_sent_elsewhere(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    before = len(upstream.requests)
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="refusing-first", messages=CHAT)
    assert [body["model"] for _, _, body in upstream.requests[before:]] == ["fail-400"]


def test_breaker_opens_skips_the_model_and_reports_it(
    sdk: openai.OpenAI, gateway: str, upstream: FakeUpstream
) -> None:
    upstream.scripts["shaky"].extend(["fail-500"] * 10)
    for _ in range(2):
        sdk.chat.completions.create(model="shaky-first", messages=CHAT)
    assert upstream.calls["shaky"] == 2
    raw = sdk.chat.completions.with_raw_response.create(model="shaky-first", messages=CHAT)
    assert upstream.calls["shaky"] == 2  # open: not called
    assert raw.headers["x-router-model"] == "echo"
    assert raw.headers["x-router-attempts"] == "1"
    admin = httpx.get(gateway + "/admin/models", headers={"authorization": f"Bearer {ADMIN}"})
    assert admin.json()["models"]["shaky"]["breaker"] == "open"
    assert httpx.get(gateway + "/admin/models").status_code == 401
    assert metric(gateway, 'router_breaker_state{model="shaky"}') == 2
    assert metric(gateway, 'router_fallbacks_total{decision="shaky-first"}') >= 3

    # Nothing healthy left: a well-formed 503 with Retry-After, no upstream call.
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="shaky", messages=CHAT)
    response = info.value.response
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_healthy_candidate"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert upstream.calls["shaky"] == 2
    # The cooldown is far off: SDKs are told not to sleep through it.
    assert response.headers["x-should-retry"] == "false"
    sent: list[str] = []
    patient = openai.OpenAI(  # the SDK's defaults: two retries, honouring Retry-After
        base_url=gateway + "/v1",
        api_key="unused",
        http_client=httpx.Client(event_hooks={"request": [lambda r: sent.append(r.url.path)]}),
    )
    with pytest.raises(openai.APIStatusError):
        patient.chat.completions.create(model="shaky", messages=CHAT)
    assert sent == ["/v1/chat/completions"]  # answered at once, not after 2 x 60 s


def test_a_failure_after_the_first_byte_feeds_the_breaker_and_metrics_once(
    sdk: openai.OpenAI, gateway: str
) -> None:
    """One feedback path: the error metric and the breaker see a mid-stream failure
    exactly like a failure before the first byte."""
    admin = {"authorization": f"Bearer {ADMIN}"}
    series = 'router_upstream_errors_total{code="upstream_error",model="torn"}'
    errors_before = metric(gateway, series)
    stream = sdk.chat.completions.create(
        model="torn-first",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    after = httpx.get(gateway + "/admin/models", headers=admin).json()["models"]["torn"]
    # The first event was a success, the cut the one failure (two would have opened it).
    assert (after["recent_calls"], after["recent_failures"]) == (2, 1)
    assert after["breaker"] == "closed"
    assert metric(gateway, series) == errors_before + 1


def test_a_model_failing_30_percent_of_calls_opens_its_breaker(
    make_gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    """Issue 19: a success between failures used to clear the count, so a model failing
    30% of its calls (never twice in a row) was never skipped. The default breaker."""
    gateway = make_gateway(
        f"""\
server: {{admin_keys: [{ADMIN}]}}
providers: {{up: {{type: openai, base_url: "${{UPSTREAM}}/v1"}}}}
models:
  intermittent: {{provider: up, upstream_model: script-intermittent}}
  echo: {{provider: up, upstream_model: echo}}
decisions: [{{name: all, when: true, route: {{candidates: [intermittent, echo]}}}}]
"""
    )
    pattern = "FSSSFSSFSSFSSSF"  # 30% failed, never two in a row
    upstream.scripts["intermittent"].extend("fail-500" if c == "F" else "echo" for c in pattern)
    sdk = openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)
    models = [
        sdk.chat.completions.with_raw_response.create(model="auto", messages=CHAT).headers[
            "x-router-model"
        ]
        for _ in range(25)
    ]
    # The 5th failure (the 15th call, a third of them failed) opened it: every answer was
    # a 200, and the 10 after it came from the fallback without calling the model.
    assert upstream.calls["intermittent"] == 15
    assert models[15:] == ["echo"] * 10
    admin = httpx.get(gateway + "/admin/models", headers={"authorization": f"Bearer {ADMIN}"})
    assert admin.json()["models"]["intermittent"]["breaker"] == "open"


def test_client_limits_answer_429_with_openai_headers(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        """\
server: {api_keys: [key-one, key-two]}
providers: {up: {type: openai, base_url: "${UPSTREAM}/v1"}}
models: {echo: {provider: up, upstream_model: echo}}
limits: {per_client: {requests_per_minute: 2}}
decisions: [{name: all, when: true, route: {candidates: [echo]}}]
"""
    )
    one = openai.OpenAI(base_url=gateway + "/v1", api_key="key-one", max_retries=0)
    two = openai.OpenAI(base_url=gateway + "/v1", api_key="key-two", max_retries=0)
    for _ in range(2):
        one.chat.completions.create(model="auto", messages=CHAT)
    with pytest.raises(openai.RateLimitError) as info:
        one.chat.completions.create(model="auto", messages=CHAT)
    response = info.value.response
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response.headers["x-ratelimit-limit-requests"] == "2"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert "key-one" not in response.text
    two.chat.completions.create(model="auto", messages=CHAT)  # its own allowance
    assert metric(gateway, 'router_rate_limited_total{limit="requests",scope="client"}') == 1


def test_token_budget_counts_streamed_usage_too(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        """\
providers: {up: {type: openai, base_url: "${UPSTREAM}/v1"}}
models: {echo: {provider: up, upstream_model: echo}}
limits: {per_model: {echo: {tokens_per_minute: 25}}}
decisions: [{name: all, when: true, route: {candidates: [echo]}}]
"""
    )
    sdk = openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)
    # 10 prompt tokens + 4 words each: 14, then 28 >= 25.
    sdk.chat.completions.create(model="auto", messages=CHAT)
    for _ in sdk.chat.completions.create(model="auto", messages=CHAT, stream=True):
        pass
    refused: openai.RateLimitError | None = None
    for _ in range(50):  # the stream's usage is charged as it closes, just after the reply
        try:
            sdk.chat.completions.create(model="auto", messages=CHAT)
        except openai.RateLimitError as exc:
            refused = exc
            break
    assert refused is not None, "the token budget never ran out"
    assert refused.response.headers["x-ratelimit-limit-tokens"] == "25"
