"""The OpenAPI document at ``/openapi.json``: what clients, generators and API fuzzers read.

Routes read their bodies themselves (size limit first, then errors that name the field),
so FastAPI never sees the request model; this module puts it in the document instead
(``ChatCompletionRequest``, ``ResponsesRequest`` and their parts under
``components.schemas``), documents every error as the OpenAI error object, and declares
Bearer keys where the config requires them.

No ``/docs`` UI: Swagger UI loads its scripts from a CDN (useless offline, and one more
browser-facing page on an API gateway); the document alone serves every tool.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from router_proxy.config.schema import Config
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.translate.responses_schema import ResponsesRequest

REF = "#/components/schemas/{model}"
CLIENT_KEY = "client_key"
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


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_CHAT_REQUEST = {"$ref": REF.format(model="ChatCompletionRequest")}
_RESPONSES_REQUEST = {"$ref": REF.format(model="ResponsesRequest")}
CHAT_BODY = _body(_CHAT_REQUEST)
RESPONSES_BODY = _body(_RESPONSES_REQUEST)
# The dry run reads either: a body with ``input`` and no ``messages`` is a Responses one.
ROUTE_BODY = _body({"anyOf": [_CHAT_REQUEST, _RESPONSES_REQUEST]})

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
    for model in (ChatCompletionRequest, ResponsesRequest):
        request = model.model_json_schema(ref_template=REF)
        schemas.update(request.pop("$defs", {}))
        schemas[model.__name__] = request
    components["securitySchemes"] = {
        CLIENT_KEY: {"type": "http", "scheme": "bearer", "description": "server.api_keys"},
        ADMIN_KEY: {"type": "http", "scheme": "bearer", "description": "server.admin_keys"},
    }
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if path.startswith("/admin/"):
                operation["security"] = [{ADMIN_KEY: []}]
            elif path.startswith("/v1/") and config.server.api_keys:
                operation["security"] = [{CLIENT_KEY: []}]
    return spec
