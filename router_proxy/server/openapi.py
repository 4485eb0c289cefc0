"""The OpenAPI document at ``/openapi.json``: what clients, generators and API fuzzers read.

Routes read their bodies themselves (size limit first, then errors that name the field),
so FastAPI never sees the request model; this module puts it in the document instead
(``ChatCompletionRequest``, ``ResponsesRequest``, the Messages routes'
``MessagesRequest`` and ``TokenCountRequest``, and their parts under
``components.schemas``), documents every error as the OpenAI error object (Anthropic's on
the Messages routes), and declares the client keys where the config requires them.

No ``/docs`` UI: Swagger UI loads its scripts from a CDN (useless offline, and one more
browser-facing page on an API gateway); the document alone serves every tool.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from router_proxy.config.schema import Config
from router_proxy.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from router_proxy.translate.anthropic_types import MessagesRequest, TokenCountRequest
from router_proxy.translate.responses_schema import ResponsesRequest

REF = "#/components/schemas/{model}"
CLIENT_KEY = "client_key"
ANTHROPIC_KEY = "anthropic_key"  # the same client keys, as Anthropic's clients send them
ADMIN_KEY = "admin_key"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error the gateway sends: the OpenAI error object."""

    error: ErrorDetail


class ChatCompletion(BaseModel):
    """The upstream's answer in OpenAI's shape (fields beyond these pass through)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[dict[str, Any]]


class TextCompletion(BaseModel):
    """A legacy ``text_completion`` (fields beyond these pass through)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[dict[str, Any]]


class EmbeddingList(BaseModel):
    """The embeddings of the inputs, in order (fields beyond these pass through)."""

    model_config = ConfigDict(extra="allow")

    object: Literal["list"]
    data: list[dict[str, Any]]
    model: str
    usage: dict[str, int] | None = None


class ResponseObject(BaseModel):
    """A Responses API ``response`` (fields beyond these pass through)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete"]
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    """Every error of the Messages routes: Anthropic's error object."""

    type: Literal["error"]
    error: AnthropicErrorDetail


class AnthropicMessage(BaseModel):
    """The answer in the Messages API's shape: text and tool_use blocks."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    stop_sequence: str | None
    usage: dict[str, int]


class TokenCount(BaseModel):
    input_tokens: int


class ModelEntry(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelEntry]


class RoutePlanBody(BaseModel):
    """The routing decision for a chat body (``POST /v1/route``)."""

    model_config = ConfigDict(extra="allow")

    decision: str
    model: str
    candidates: list[str]
    signals: dict[str, Any]


class Status(BaseModel):
    status: str


class Reloaded(BaseModel):
    status: Literal["reloaded"]
    generation: int


_WHY = {
    400: "Invalid request: malformed JSON, an invalid field (`param` names it), too many "
    "messages; or a policy refused on reload",
    401: "Missing or wrong key",
    403: "Admin endpoints are disabled (no server.admin_keys)",
    404: "Unknown model, decision or path",
    413: "Body larger than server.max_body_bytes",
    422: "The upstream refused the request as unprocessable",
    429: "The upstream's rate limit (its Retry-After is passed on)",
    502: "The upstream failed or answered nonsense",
    503: "Not ready yet",
    504: "The upstream timed out",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented as the OpenAI error object."""
    return {status: {"model": ErrorResponse, "description": _WHY[status]} for status in statuses}


def errors_beside_text(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``errors`` for a route whose answer is text (FastAPI would file a ``model`` under
    the route's media type): the OpenAI error object, as JSON."""
    return {
        status: {
            "description": _WHY[status],
            "content": {"application/json": {"schema": _ref("ErrorResponse")}},
        }
        for status in statuses
    }


def anthropic_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a Messages route: each status as Anthropic's error object."""
    return {
        status: {"model": AnthropicErrorResponse, "description": _WHY[status]}
        for status in statuses
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _ref(model: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=model)}


CHAT_BODY = _body(_ref("ChatCompletionRequest"))
RESPONSES_BODY = _body(_ref("ResponsesRequest"))
MESSAGES_BODY = _body(_ref("MessagesRequest"))
COUNT_TOKENS_BODY = _body(_ref("TokenCountRequest"))
COMPLETIONS_BODY = _body(_ref("CompletionRequest"))
EMBEDDINGS_BODY = _body(_ref("EmbeddingRequest"))
# The dry run reads either: a body with ``input`` and no ``messages`` is a Responses one.
ROUTE_BODY = _body({"anyOf": [_ref("ChatCompletionRequest"), _ref("ResponsesRequest")]})

# The route reads it itself: a declared parameter would add a 422 for a string that
# cannot be invalid.
MODEL_PATH = {
    "parameters": [
        {
            "name": "model",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "`auto`, a decision or a model, as `GET /v1/models` lists them",
        }
    ]
}

# Before OpenAPI 3.2 an event stream's ``schema`` describes one event.
STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "string",
                    "description": "a chat.completion.chunk object as JSON, an OpenAI error "
                    "object as JSON (the stream failed after it started), or [DONE]",
                },
                "event": {"type": "string"},
            },
        }
    }
}

MESSAGES_STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {
                    "type": "string",
                    "description": "message_start, content_block_start, content_block_delta, "
                    "content_block_stop, message_delta, message_stop; or error (the stream "
                    "failed after it started)",
                },
                "data": {"type": "string", "description": "the event's object as JSON"},
            },
        }
    }
}


RESPONSES_STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string", "description": "the event's type"},
                "data": {
                    "type": "string",
                    "description": "the event as JSON with its `type` and `sequence_number`: "
                    "response.created, response.output_text.delta, ..., then "
                    "response.completed, response.incomplete or response.failed",
                },
            },
        }
    }
}


# The routes whose requests are routed: a caller's per-request preferences apply to them
# (engine/preferences.py; each header's body field of the same name works as well).
ROUTED_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/messages",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/route",
    }
)
_MODELS = {"type": "string", "description": "model names, comma-separated"}
_PREFERENCES: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("allowed_models", _MODELS, "only these of the decision's models"),
    ("excluded_models", _MODELS, "none of these"),
    ("cost_weight", {"type": "number", "minimum": 0}, "the learned selectors' cost weight"),
    (
        "max_cost_per_1k",
        {"type": "number", "minimum": 0},
        "only models whose input and output price per 1,000 tokens is at most this",
    ),
    ("prefer", {"type": "string", "enum": ["latency", "cost"]}, "candidates by this"),
)
_NULL = {"type": "null"}
# The same preferences as body fields (taken out of the body before it goes upstream).
PREFERENCE_FIELDS: dict[str, dict[str, Any]] = {
    "allowed_models": {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}, _NULL],
        "description": "only these of the decision's models (a header: x-router-allowed-models)",
    },
    "excluded_models": {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}, _NULL],
        "description": "none of these (x-router-excluded-models)",
    },
    "cost_weight": {
        "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}, _NULL],
        "description": "the learned selectors' cost weight (x-router-cost-weight)",
    },
    "max_cost_per_1k": {
        "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}, _NULL],
        "description": "only models whose input and output price per 1,000 tokens is at "
        "most this (x-router-max-cost-per-1k)",
    },
    "prefer": {
        "anyOf": [{"type": "string", "enum": ["latency", "cost"]}, _NULL],
        "description": "candidates by observed latency or by estimated cost (x-router-prefer)",
    },
}
PREFERENCE_HEADERS = [
    {
        "name": "x-router-" + name.replace("_", "-"),
        "in": "header",
        "required": False,
        "schema": schema,
        "description": f"{text} (or the body field `{name}`; the policy's `preferences` "
        "says which a caller may set)",
    }
    for name, schema, text in _PREFERENCES
]


def install_openapi(app: FastAPI, config: Config) -> None:
    """Serve the document described above (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, config)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def build_openapi(app: FastAPI, config: Config) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    requests: tuple[type[BaseModel], ...] = (
        ChatCompletionRequest,
        ResponsesRequest,
        MessagesRequest,
        TokenCountRequest,
        CompletionRequest,
        EmbeddingRequest,
    )
    for model in requests:
        request = model.model_json_schema(ref_template=REF)
        schemas.update(request.pop("$defs", {}))
        if model is not TokenCountRequest:  # every routed request takes preferences
            request.setdefault("properties", {}).update(PREFERENCE_FIELDS)
        schemas[model.__name__] = request
    components["securitySchemes"] = {
        CLIENT_KEY: {"type": "http", "scheme": "bearer", "description": "server.api_keys"},
        ANTHROPIC_KEY: {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "server.api_keys, as Anthropic's clients send them (the Messages "
            "routes also take `Authorization: Bearer KEY`)",
        },
        ADMIN_KEY: {"type": "http", "scheme": "bearer", "description": "server.admin_keys"},
    }
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if path in ROUTED_PATHS:
                operation.setdefault("parameters", []).extend(PREFERENCE_HEADERS)
            if path.startswith("/admin/"):
                operation["security"] = [{ADMIN_KEY: []}]
            elif path.startswith("/v1/messages") and config.server.api_keys:
                operation["security"] = [{ANTHROPIC_KEY: []}]
            elif path.startswith("/v1/") and config.server.api_keys:
                operation["security"] = [{CLIENT_KEY: []}]
    return spec
