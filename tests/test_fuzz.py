"""The API driven from its own OpenAPI document by schemathesis, against a real server.

Bounded: at most MAX_EXAMPLES generated requests per operation (valid and invalid ones),
each with a request timeout (no hang) and a per-example deadline. Checks: no 5xx, status
codes, content types, headers and bodies as documented, schema-invalid input rejected
with a 4xx, schema-valid input accepted, keys enforced where the document declares them,
and every error in the OpenAI format.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from router_proxy.config.conversations import PREFERENCE_NAMES
from router_proxy.config.load import load_config
from router_proxy.server.app import create_app
from router_proxy.server.http import protocol_options
from tests.support.serving import ServerThread

# FUZZ_EXAMPLES=500 for a deeper run by hand; the suite keeps it short.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
REQUEST_TIMEOUT = 10.0
CLIENT_KEY = "fuzz-client-key-3f9a"
ADMIN_KEY = "fuzz-admin-key-7c21"
DEFAULT = Path(__file__).parent.parent / "configs" / "default.yaml"
EXTRA = f"""
  api_keys: [{CLIENT_KEY}]
  admin_keys: [{ADMIN_KEY}]
  watch_config: false
  max_messages: 64
"""


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """The default policy (mock models) with keys; the policy file is real, so admin
    reloads really reload. Yields the base URL and the names ``model`` may take."""
    policy = tmp_path_factory.mktemp("fuzz") / "policy.yaml"
    policy.write_text(DEFAULT.read_text().replace("server:\n", "server:" + EXTRA, 1))
    config, _ = load_config(policy)
    names = ["auto", *(d.name for d in config.decisions), *config.models]
    with ServerThread(
        create_app(config, config_path=policy), **protocol_options(config.server)
    ) as server:
        yield server.base_url, names


@pytest.fixture(scope="module")
def api_schema(fuzz_gateway: tuple[str, list[str]]) -> Any:
    base_url, names = fuzz_gateway
    spec = httpx.get(base_url + "/openapi.json", timeout=10).json()
    # Test-side only: valid requests name a model the policy knows, so valid data reaches
    # routing and the mock models (and must succeed); invalid data still tries any string.
    spec = copy.deepcopy(spec)
    schemas = spec["components"]["schemas"]
    for name in (
        "ChatCompletionRequest",
        "ResponsesRequest",
        "MessagesRequest",
        "CompletionRequest",
        "EmbeddingRequest",
    ):
        schemas[name]["properties"]["model"] = {"type": "string", "enum": names}
    # Likewise, a tool_choice naming one function must name one of the request's tools (a
    # model refuses it otherwise, as OpenAI does): valid requests choose none, auto or
    # required.
    choice = schemas["ResponsesRequest"]["properties"]["tool_choice"]
    choice["anyOf"] = [s for s in choice["anyOf"] if "$ref" not in s]
    # A tool_choice naming one tool must name one of the tools (a 400 otherwise, as from
    # Anthropic), which a schema cannot say: valid Messages requests leave that form out.
    choices = [
        {"$ref": f"#/components/schemas/ToolChoice{kind}"} for kind in ("Auto", "Any", "None")
    ]
    schemas["MessagesRequest"]["properties"]["tool_choice"] = {
        "anyOf": [*choices, {"type": "null"}]
    }
    return schemathesis.openapi.from_dict(spec)


def openai_errors(ctx: CheckContext, response: schemathesis.Response, case: Any) -> None:
    """Every 4xx/5xx body is ``{"error": {"message": str, "type": str, "param", "code"}}``
    (on the Messages routes, Anthropic's ``{"type": "error", "error": {type, message}}``)."""
    if response.status_code < 400:
        return
    body = response.json()
    if case.path.startswith("/v1/messages"):
        assert isinstance(body, dict), body
        assert set(body) == {"type", "error"}, body
        assert body["type"] == "error", body
        assert set(body["error"]) == {"type", "message"}, body
        assert isinstance(body["error"]["type"], str), body
        assert isinstance(body["error"]["message"], str), body
        assert body["error"]["message"], body
        assert response.headers.get("content-type", [""])[0].startswith("application/json")
        return
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    assert isinstance(error["type"], str), error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error
    assert response.headers.get("content-type", [""])[0].startswith("application/json")


def accepted_unless_a_preference_is_refused(
    ctx: CheckContext, response: schemathesis.Response, case: Any
) -> bool | None:
    """``positive_data_acceptance``, except that a per-request preference the policy
    cannot honour (no candidate left, a model name it does not know, a number given as
    text that is none) is refused with a 400 naming it: the schema cannot say which."""
    if response.status_code == 400 and _refused_preference(response.json()):
        return None
    return positive_data_acceptance(ctx, response, case)


def _refused_preference(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    if "param" in error:  # OpenAI's error object names the field
        return error["param"] in PREFERENCE_NAMES
    # Anthropic's has no param: the gateway's message starts with the field's name.
    return str(error.get("message", "")).split(":", 1)[0] in PREFERENCE_NAMES


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    accepted_unless_a_preference_is_refused,
    ignored_auth,  # a key is really required: probes without one and with a wrong one
    openai_errors,
]

OPERATIONS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/route"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("POST", "/admin/reload"),
    ("GET", "/admin/models"),
    ("POST", "/admin/cache/purge"),
]
WITH_BODY = [op for op in OPERATIONS if op[0] == "POST"]
CASES = [(*op, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    (*op, GenerationMode.NEGATIVE) for op in WITH_BODY
]


def test_every_operation_is_fuzzed(api_schema: Any) -> None:
    documented = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=lambda v: str(getattr(v, "value", v))
)
def test_api_from_its_openapi_document(
    api_schema: Any,
    fuzz_gateway: tuple[str, list[str]],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    base_url, _ = fuzz_gateway
    key = ADMIN_KEY if path.startswith("/admin/") else CLIENT_KEY
    # (the names schemathesis strips from what it reports)
    auth = (
        {"x-api-key": key}
        if path.startswith("/v1/messages")
        else {"Authorization": f"Bearer {key}"}
    )
    strategy = api_schema[path][method].as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=5000,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same requests every run: a failure here is reproducible
        database=None,
    )
    def exchange(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=base_url,
            headers=auth,
            checks=CHECKS,
            timeout=REQUEST_TIMEOUT,
        )

    exchange()
    if (method, path, mode) == CASES[0]:  # valid chat requests really reached the models
        metrics = httpx.get(base_url + "/metrics", timeout=10).text
        assert 'status="200"' in metrics
