"""/openapi.json: complete enough to drive the API from (regressions from fuzzing it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from router_proxy.config.load import load_config_text
from router_proxy.protocol import MAX_COUNT
from router_proxy.server.app import create_app
from tests.conftest import POLICY
from tests.test_http_api import BODY, CHAT, assert_openai_error

ENV = {"UPSTREAM": "http://127.0.0.1:9", "OPENAI_KEY": "k", "ANTHROPIC_KEY": "k"}


def spec_for(policy: str) -> dict[str, Any]:
    config, _ = load_config_text(policy, env=ENV)
    return create_app(config).openapi()


def refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_served_and_every_reference_resolves(gateway_url: str) -> None:
    """The request schema used to carry its own ``#/$defs/...`` refs, which point nowhere
    inside an OpenAPI document."""
    spec = httpx.get(gateway_url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for ref in set(refs(spec)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    request = schemas["ChatCompletionRequest"]
    assert request["additionalProperties"] is True  # unknown parameters pass through
    assert set(request["required"]) == {"model", "messages"}
    messages = spec["paths"]["/v1/messages"]["post"]
    body = messages["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/MessagesRequest"}
    assert set(schemas["MessagesRequest"]["required"]) == {"model", "messages", "max_tokens"}
    assert set(schemas["TokenCountRequest"]["required"]) == {"model", "messages"}


def test_per_request_preferences_are_documented_on_every_routed_route() -> None:
    spec = spec_for(POLICY)
    preferences = {
        "x-router-allowed-models",
        "x-router-excluded-models",
        "x-router-cost-weight",
        "x-router-max-cost-per-1k",
        "x-router-prefer",
    }
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/route"):
        parameters = spec["paths"][path]["post"]["parameters"]
        headers = {p["name"]: p for p in parameters if p["in"] == "header"}
        assert preferences <= set(headers), path
        assert headers["x-router-prefer"]["schema"]["enum"] == ["latency", "cost"]
    assert "parameters" not in spec["paths"]["/v1/messages/count_tokens"]["post"]
    schemas = spec["components"]["schemas"]
    names = {h.removeprefix("x-router-").replace("-", "_") for h in preferences}
    for request in ("ChatCompletionRequest", "ResponsesRequest", "MessagesRequest"):
        assert names <= set(schemas[request]["properties"]), request
    assert not names & set(schemas["TokenCountRequest"]["properties"])


def test_every_error_is_documented_as_the_openai_error_object() -> None:
    """(Anthropic's error object on the Messages routes.)"""
    spec = spec_for(POLICY)
    openai_error = {"$ref": "#/components/schemas/ErrorResponse"}
    anthropic_error = {"$ref": "#/components/schemas/AnthropicErrorResponse"}
    statuses = set()
    for path, operations in spec["paths"].items():
        error = anthropic_error if path.startswith("/v1/messages") else openai_error
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    statuses.add(int(status))
                    assert response["content"]["application/json"]["schema"] == error
    assert {400, 401, 403, 404, 413, 502, 503, 504} <= statuses
    detail = spec["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"message", "type", "param", "code"}


def test_stream_events_are_described_as_events() -> None:
    """An event-stream ``schema`` describes one event (object with ``data``), not a string."""
    responses = spec_for(POLICY)["paths"]["/v1/chat/completions"]["post"]["responses"]
    event = responses["200"]["content"]["text/event-stream"]["schema"]
    assert event["type"] == "object"
    assert event["required"] == ["data"]


@pytest.mark.parametrize("field", ["n", "max_tokens", "max_completion_tokens"])
def test_counts_have_a_documented_maximum(gateway_url: str, field: str) -> None:
    """A schema-valid count of 2**76 used to be refused as 'exceeded maximum size'."""
    request = spec_for(POLICY)["components"]["schemas"]["ChatCompletionRequest"]
    (bounded,) = [s for s in request["properties"][field]["anyOf"] if s["type"] == "integer"]
    assert bounded["maximum"] == MAX_COUNT
    with httpx.Client(base_url=gateway_url) as http:
        for value in (MAX_COUNT + 1, 2**76):
            response = http.post(CHAT, json={**BODY, field: value})
            assert_openai_error(response, 400, param=field)


def test_keys_are_declared_where_they_are_required() -> None:
    open_spec = spec_for(POLICY)
    keyed = spec_for(POLICY.replace("server:\n", "server:\n  api_keys: [k1]\n"))
    assert "security" not in open_spec["paths"]["/v1/chat/completions"]["post"]
    for spec in (open_spec, keyed):
        assert spec["paths"]["/admin/reload"]["post"]["security"] == [{"admin_key": []}]
        assert spec["paths"]["/health"]["get"].get("security") is None
    for path, method in [("/v1/chat/completions", "post"), ("/v1/models", "get")]:
        assert keyed["paths"][path][method]["security"] == [{"client_key": []}]
    for path in ("/v1/messages", "/v1/messages/count_tokens"):  # x-api-key (Bearer works too)
        assert keyed["paths"][path]["post"]["security"] == [{"anthropic_key": []}]
        assert "security" not in open_spec["paths"][path]["post"]


def test_no_docs_ui(gateway_url: str) -> None:
    with httpx.Client(base_url=gateway_url) as http:
        for path in ("/docs", "/redoc"):
            assert_openai_error(http.get(path), 404)
