"""An upstream's own client errors reach the client as the upstream said them (status,
type, param, code, message, rate-limit headers), through a real gateway on a real port,
seen by the official OpenAI and Anthropic SDKs; and ``GET /v1/models/{model}``."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from router_proxy.errors import UpstreamDetail, UpstreamStatusError
from router_proxy.providers.http import status_error, upstream_error_fields
from tests.conftest import UPSTREAM_KEY, GatewayFactory
from tests.support.upstream import FAILURES, RATE_LIMITS, FakeUpstream

CLIENT_KEY = "sk-client-errors-7"
POLICY = f"""\
server:
  api_keys: [{CLIENT_KEY}]
providers:
  up: {{type: openai, base_url: "${{UPSTREAM}}/v1", api_key: "${{OPENAI_KEY}}"}}
  ant: {{type: anthropic, base_url: "${{UPSTREAM}}", api_key: "${{ANTHROPIC_KEY}}"}}
models:
  echo: {{provider: up, upstream_model: echo}}
  long: {{provider: up, upstream_model: fail-context}}
  quota: {{provider: up, upstream_model: fail-quota}}
  leaky: {{provider: up, upstream_model: fail-leaky}}
  broken: {{provider: up, upstream_model: fail-500}}
  claude-long: {{provider: ant, upstream_model: fail-context}}
  Qwen/Qwen2.5-7B: {{provider: up, upstream_model: echo}}
resilience:
  retries: {{backoff_initial: 0.01, backoff_max: 0.02}}
decisions:
  - {{name: sturdy, when: false, route: {{candidates: [broken, echo]}}}}
  - {{name: careful, when: false, route: {{candidates: [long, echo]}}}}
  - {{name: default, when: true, route: {{candidates: [echo]}}}}
"""
USER: Any = [{"role": "user", "content": "hello there"}]
CONTEXT_MESSAGE = FAILURES["fail-context"][2]


@pytest.fixture(scope="module")
def gateway(make_gateway: GatewayFactory) -> str:
    return make_gateway(POLICY)


@pytest.fixture
def client(gateway: str) -> openai.OpenAI:
    # No retries: each test sees exactly what one request got.
    return openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture
def claude(gateway: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0)


def message_of(error: openai.APIStatusError) -> str:
    """The error object's message (the SDK's ``.message`` puts "Error code: N - " first)."""
    assert isinstance(error.body, dict)
    return str(error.body["message"])


def rate_limit_headers(response: httpx.Response, prefix: str, model: str) -> dict[str, str]:
    return {name: response.headers.get(prefix + name) for name in RATE_LIMITS[model]}


# --- upstream client errors through the OpenAI SDK --------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_context_length_error_keeps_code_param_message_and_headers(
    client: openai.OpenAI, stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="long", messages=USER, stream=stream)
    error = info.value
    assert error.status_code == 400
    assert error.code == "context_length_exceeded"
    assert error.param == "messages"
    assert error.type == "invalid_request_error"
    # The upstream's words first, then which of the gateway's models said them.
    assert message_of(error) == f"{CONTEXT_MESSAGE} (model 'long')"
    limits = rate_limit_headers(error.response, "x-ratelimit-", "fail-context")
    assert limits == RATE_LIMITS["fail-context"]
    assert error.response.headers["x-router-model"] == "long"


def test_upstream_rate_limit_keeps_its_type_code_and_headers(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="quota", messages=USER)
    error = info.value
    assert error.status_code == 429
    assert (error.code, error.type, error.param) == ("rate_limit_exceeded", "tokens", None)
    assert message_of(error).startswith(FAILURES["fail-quota"][2])
    assert error.response.headers["retry-after"] == "7"
    limits = rate_limit_headers(error.response, "x-ratelimit-", "fail-quota")
    assert limits == RATE_LIMITS["fail-quota"]


def test_anthropic_upstream_error_in_openai_shape(client: openai.OpenAI) -> None:
    """Anthropic's error has no code or param: its type becomes the code."""
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude-long", messages=USER)
    error = info.value
    assert (error.code, error.type, error.param) == (
        "invalid_request_error",
        "invalid_request_error",
        None,
    )
    assert message_of(error) == f"{CONTEXT_MESSAGE} (model 'claude-long')"
    limits = rate_limit_headers(error.response, "anthropic-ratelimit-", "fail-context")
    assert limits == RATE_LIMITS["fail-context"]


def test_secrets_in_an_upstream_error_body_are_scrubbed(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="leaky", messages=USER)
    error = info.value
    assert message_of(error) == "bad value in request from key *** (model 'leaky')"
    assert (error.code, error.param) == ("invalid_value", "key ***")
    assert UPSTREAM_KEY not in error.response.text
    assert UPSTREAM_KEY not in str(dict(error.response.headers))


def test_upstream_500_is_502_and_falls_back(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="sturdy", messages=USER)
    assert raw.headers["x-router-model"] == "echo"
    assert raw.parse().choices[0].message.content == "echo: hello there"
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="broken", messages=USER)
    assert info.value.status_code == 502
    assert (info.value.code, info.value.type) == ("upstream_error", "upstream_error")
    assert "model 'broken' upstream returned 500" in info.value.message


def test_client_error_is_not_sent_to_the_next_candidate(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    before = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="careful", messages=USER)
    assert info.value.code == "context_length_exceeded"
    assert [body["model"] for _, _, body in upstream.requests[before:]] == ["fail-context"]


# --- the Messages surface ---------------------------------------------------------------


@pytest.mark.parametrize("model", ["long", "claude-long"])
def test_messages_surface_sees_anthropic_type_and_the_message(
    claude: anthropic.Anthropic, model: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model=model, max_tokens=10, messages=USER)
    error = info.value
    assert error.status_code == 400
    assert error.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": f"{CONTEXT_MESSAGE} (model '{model}')",
        },
    }


def test_messages_surface_rate_limit_keeps_headers(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="quota", max_tokens=10, messages=USER)
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.response.headers["x-ratelimit-remaining-tokens"] == "0"


# --- parsing, without a server ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message", "detail"),
    [
        (
            b'{"error": {"message": "m", "type": "t", "param": "p", "code": "c"}}',
            "m",
            UpstreamDetail("t", "p", "c"),
        ),
        # vLLM: unwrapped, the status again as a number for a code
        (
            b'{"object": "error", "message": "m", "type": "BadRequestError", "code": 400}',
            "m",
            UpstreamDetail("BadRequestError"),
        ),
        (
            b'{"type": "error", "error": {"type": "not_found_error", "message": "m"}}',
            "m",
            UpstreamDetail(code="not_found_error"),
        ),
        (b'{"error": "just a string"}', "just a string", None),
        (b"<html>Bad Request</html>", "<html>Bad Request</html>", None),
        (b"", "no body", None),
        (b"[1, 2]", "unrecognised error body", None),
    ],
)
def test_upstream_error_fields(body: bytes, message: str, detail: UpstreamDetail | None) -> None:
    assert upstream_error_fields(body) == (message, detail)


def test_a_body_without_fields_keeps_the_gateway_code() -> None:
    error = status_error(400, {}, b"<html>Bad Request</html>", model="m", secrets=())
    assert error.to_dict()["error"] == {
        "message": "<html>Bad Request</html> (model 'm')",
        "type": "invalid_request_error",
        "param": None,
        "code": "upstream_error",
    }


def test_server_statuses_ignore_the_upstream_fields() -> None:
    body = b'{"error": {"message": "m", "type": "server_error", "param": "x", "code": "c"}}'
    headers = {"Retry-After": "1", "X-RateLimit-Limit-Requests": "5", "Server": "x"}
    error = status_error(503, headers, body, model="m", secrets=())
    assert isinstance(error, UpstreamStatusError)
    assert error.status_code == 502
    assert error.to_dict()["error"] == {
        "message": "model 'm' upstream returned 503: m",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_error",
    }
    # still read by the retry policy
    assert error.headers == {"retry-after": "1", "x-ratelimit-limit-requests": "5"}


# --- GET /v1/models/{model} -------------------------------------------------------------


@pytest.mark.parametrize("name", ["auto", "sturdy", "echo", "Qwen/Qwen2.5-7B"])
def test_retrieve_model_is_its_list_entry(client: openai.OpenAI, name: str) -> None:
    listed = {m.id: m for m in client.models.list()}
    assert client.models.retrieve(name) == listed[name]


def test_retrieve_model_owners(client: openai.OpenAI) -> None:
    owners = {name: client.models.retrieve(name).owned_by for name in ("auto", "sturdy", "echo")}
    assert owners == {"auto": "router-proxy", "sturdy": "router-proxy:decision", "echo": "up"}


def test_retrieve_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-5")
    assert (info.value.code, info.value.param) == ("model_not_found", "model")
    assert info.value.type == "invalid_request_error"
    assert "'gpt-5'" in info.value.message


def test_retrieve_model_needs_a_key(gateway: str) -> None:
    anonymous = openai.OpenAI(base_url=gateway + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.retrieve("auto")
