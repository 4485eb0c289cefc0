"""The HTTP surface with a plain client: bad input, auth, limits, health, metrics, logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import POLICY, UPSTREAM_KEY, GatewayFactory
from tests.support.logs import log_line

CHAT = "/v1/chat/completions"
BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def http(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=10) as client:
        yield client


def assert_openai_error(
    response: httpx.Response, status: int, **expected: object
) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-router-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    for key, value in expected.items():
        assert error[key] == value, (key, error)
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "content", [b"{not json", b"", b"[1, 2]", b"\xff\xfe", b'"a string"', b"null"]
)
def test_malformed_bodies_are_400(http: httpx.Client, content: bytes) -> None:
    assert_openai_error(http.post(CHAT, content=content), 400, type="invalid_request_error")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "auto"}, "messages"),
        ({"model": "auto", "messages": []}, "messages"),
        ({"model": "auto", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "auto", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({**BODY, "temperature": 7}, "temperature"),
        ({**BODY, "max_tokens": 0}, "max_tokens"),
        ({**BODY, "stream": "yes please"}, "stream"),
        ({"model": 42, "messages": BODY["messages"]}, "model"),
    ],
)
def test_invalid_fields_are_400_naming_the_field(
    http: httpx.Client, body: dict[str, object], param: str
) -> None:
    error = assert_openai_error(http.post(CHAT, json=body), 400, param=param)
    assert param in str(error["message"])


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 10_000}]}
    assert_openai_error(http.post(CHAT, json=big), 413, code="request_too_large")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 1000
        yield b'"}]}'

    assert_openai_error(http.post(CHAT, content=chunked()), 413, code="request_too_large")


def test_unknown_path_and_method(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/nope"), 404)
    assert_openai_error(http.get(CHAT), 405)


def metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_health_ready_and_metrics(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/ready").json() == {"status": "ready"}
    ok = 'router_requests_total{decision="default",model="gpt-echo",status="200"}'
    cost = 'router_cost_dollars_total{model="gpt-echo"}'
    prompt = 'router_tokens_total{kind="prompt",model="gpt-echo"}'
    completion = 'router_tokens_total{kind="completion",model="gpt-echo"}'
    before = http.get("/metrics").text
    http.post(CHAT, json=BODY)  # default -> gpt-echo: "echo: hi" = 10 prompt + 2 completion tokens
    http.post(CHAT, json={**BODY, "model": "broken"})
    after = http.get("/metrics").text
    assert metric(after, ok) - metric(before, ok) == 1
    assert metric(after, prompt) - metric(before, prompt) == 10
    assert metric(after, completion) - metric(before, completion) == 2
    # gpt-echo costs $1000 / $2000 per Mtok in the test policy: 10 and 2 tokens = $0.014
    assert metric(after, cost) - metric(before, cost) == pytest.approx(0.014)
    assert (
        metric(after, 'router_requests_total{decision="direct",model="broken",status="502"}') >= 1
    )
    assert metric(after, 'router_upstream_errors_total{code="upstream_error",model="broken"}') >= 1
    assert "router_routing_seconds_bucket" in after
    assert "router_upstream_seconds_bucket" in after
    assert UPSTREAM_KEY not in after


def test_streamed_calls_are_counted_without_changing_the_stream(http: httpx.Client) -> None:
    completion = 'router_tokens_total{kind="completion",model="gpt-echo"}'
    before = http.get("/metrics").text
    response = http.post(CHAT, json={**BODY, "stream": True})
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert not any('"usage"' in event for event in events)  # the client did not ask for it
    after = http.get("/metrics").text
    assert metric(after, completion) - metric(before, completion) == 2


def test_one_json_log_line_per_request_with_its_id(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="router_proxy.access")
    response = http.post(
        CHAT,
        json=BODY,
        headers={"x-request-id": "req-abc-123", "authorization": "Bearer client-key"},
    )
    assert response.headers["x-router-request-id"] == "req-abc-123"
    log_line(caplog, "req-abc-123")  # written just after the answer went
    records = [
        r for r in caplog.records if getattr(r, "fields", {}).get("request_id") == "req-abc-123"
    ]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    assert fields["status"] == 200
    assert fields["decision"] == "default"
    assert fields["model"] == "gpt-echo"
    assert fields["prompt_tokens"] == 10
    assert fields["cost_usd"] == pytest.approx(0.014)
    from router_proxy.observability.logging import JsonFormatter

    line = JsonFormatter().format(records[0])
    assert json.loads(line)["request_id"] == "req-abc-123"
    assert "client-key" not in line
    assert UPSTREAM_KEY not in line
    assert "hi" not in json.loads(line).values()


def test_client_keys_are_required_when_configured(make_gateway: GatewayFactory) -> None:
    url = make_gateway(
        POLICY.replace("server:\n", "server:\n  api_keys: [team-a-key, team-b-key]\n")
    )
    for key in ("wrong", "team-a-key-but-longer"):
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            client.chat.completions.create(model="auto", messages=BODY["messages"])  # type: ignore[arg-type]
        assert info.value.code == "invalid_api_key"
        assert key not in info.value.message
    with httpx.Client(base_url=url) as http:
        assert_openai_error(http.post(CHAT, json=BODY), 401)
        assert_openai_error(http.get("/v1/models"), 401)
        assert http.get("/health").status_code == 200  # probes need no key
    client = openai.OpenAI(base_url=url + "/v1", api_key="team-b-key", max_retries=0)
    assert client.chat.completions.create(model="auto", messages=BODY["messages"]).choices  # type: ignore[arg-type]


def test_dry_run_route_calls_no_upstream(http: httpx.Client, upstream) -> None:  # type: ignore[no-untyped-def]
    before = len(upstream.requests)
    body = {"model": "auto", "messages": [{"role": "user", "content": "a python question"}]}
    plan = http.post("/v1/route", json=body).json()
    assert plan["decision"] == "coding"
    assert plan["model"] == "claude-echo"
    assert plan["signals"]["code"]["fired"] is True
    assert len(upstream.requests) == before


def test_reload_series_exist_from_the_start(http: httpx.Client) -> None:
    # An alert on increase(...{result="failure"}) needs the series before the first failure.
    text = http.get("/metrics").text
    for trigger in ("file", "admin", "sighup"):
        for result in ("success", "failure"):
            assert f'router_config_reloads_total{{result="{result}",trigger="{trigger}"}}' in text
