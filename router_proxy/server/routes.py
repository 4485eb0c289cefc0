"""The HTTP routes: OpenAI-compatible API, Anthropic Messages, dry-run routing, health
and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from router_proxy.config.references import AUTO
from router_proxy.errors import GatewayError, NotFoundError, ServiceUnavailableError
from router_proxy.runtime import Runtime
from router_proxy.server.deps import CurrentRuntime, current_runtime
from router_proxy.server.errors import error_response
from router_proxy.server.ids import REQUEST_ID_HEADER, request_id_of
from router_proxy.server.openapi import (
    CHAT_BODY,
    COMPLETIONS_BODY,
    COUNT_TOKENS_BODY,
    EMBEDDINGS_BODY,
    MESSAGES_BODY,
    MESSAGES_STREAM,
    MODEL_PATH,
    RESPONSES_BODY,
    RESPONSES_STREAM,
    ROUTE_BODY,
    STREAM,
    AnthropicMessage,
    ChatCompletion,
    EmbeddingList,
    ModelEntry,
    ModelList,
    ResponseObject,
    RoutePlanBody,
    Status,
    TextCompletion,
    TokenCount,
    anthropic_errors,
    errors,
    errors_beside_text,
)
from router_proxy.server.surfaces import handler
from router_proxy.server.surfaces.base import Surface
from router_proxy.server.surfaces.chat import ChatSurface
from router_proxy.server.surfaces.completions import CompletionsSurface
from router_proxy.server.surfaces.detect import AnyBodySurface
from router_proxy.server.surfaces.embeddings import EmbeddingsSurface
from router_proxy.server.surfaces.messages import MessagesSurface, count_tokens
from router_proxy.server.surfaces.responses import ResponsesSurface

router = APIRouter()

# Served by the fast path (server/fast_path.py), one surface instance per request; the
# routes below declare them for the OpenAPI document (and serve them if it is bypassed).
SURFACE_ROUTES: dict[str, type[Surface]] = {
    "/v1/chat/completions": ChatSurface,
    "/v1/responses": ResponsesSurface,
    "/v1/messages": MessagesSurface,
    "/v1/completions": CompletionsSurface,
    "/v1/embeddings": EmbeddingsSurface,
}


@router.post(
    "/v1/chat/completions",
    openapi_extra=CHAT_BODY,
    tags=["openai"],
    responses={
        200: {"model": ChatCompletion, "content": STREAM, "description": "JSON, or SSE chunks"},
        **errors(400, 401, 404, 413, 422, 429, 502, 504),
    },
)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, streamed or not; `model` is auto, a decision or a model."""
    return await handler.serve(ChatSurface(), await current_runtime(request), request)


@router.post(
    "/v1/responses",
    openapi_extra=RESPONSES_BODY,
    tags=["openai"],
    responses={
        200: {"model": ResponseObject, "content": RESPONSES_STREAM, "description": "JSON, or SSE"},
        **errors(400, 401, 404, 413, 422, 429, 502, 504),
    },
)
async def responses(request: Request) -> Response:
    """OpenAI Responses API, streamed or not; nothing is stored (send the whole input)."""
    return await handler.serve(ResponsesSurface(), await current_runtime(request), request)


@router.post(
    "/v1/completions",
    openapi_extra=COMPLETIONS_BODY,
    tags=["openai"],
    responses={
        200: {"model": TextCompletion, "content": STREAM, "description": "JSON, or SSE chunks"},
        **errors(400, 401, 404, 413, 422, 429, 502, 504),
    },
)
async def completions(request: Request) -> Response:
    """Legacy text completions (and fill-in-the-middle), streamed or not, to models whose
    provider serves them; 400 when the decision's candidates cannot."""
    return await handler.serve(CompletionsSurface(), await current_runtime(request), request)


@router.post(
    "/v1/embeddings",
    openapi_extra=EMBEDDINGS_BODY,
    tags=["openai"],
    responses={200: {"model": EmbeddingList}, **errors(400, 401, 404, 413, 422, 429, 502, 504)},
)
async def embeddings(request: Request) -> Response:
    """Embeddings of one input or a batch; routed and metered like any request (cost at
    the model's input price)."""
    return await handler.serve(EmbeddingsSurface(), await current_runtime(request), request)


@router.post(
    "/v1/messages",
    openapi_extra=MESSAGES_BODY,
    tags=["anthropic"],
    responses={
        200: {
            "model": AnthropicMessage,
            "content": MESSAGES_STREAM,
            "description": "JSON, or the Messages stream's events",
        },
        **anthropic_errors(400, 401, 404, 413, 422, 429, 502, 504),
    },
)
async def messages(request: Request) -> Response:
    """Anthropic Messages, streamed or not; `model` is auto, a decision or a model."""
    return await handler.serve(MessagesSurface(), await current_runtime(request), request)


@router.post(
    "/v1/messages/count_tokens",
    openapi_extra=COUNT_TOKENS_BODY,
    tags=["anthropic"],
    responses={200: {"model": TokenCount}, **anthropic_errors(400, 401, 413, 429)},
)
async def count_message_tokens(request: Request, runtime: CurrentRuntime) -> Response:
    """The tokens of a Messages prompt, counted offline; calls no model."""
    return await count_tokens(runtime, request)


@router.post(
    "/v1/route",
    openapi_extra=ROUTE_BODY,
    tags=["routing"],
    responses={200: {"model": RoutePlanBody}, **errors(400, 401, 404, 413, 429)},
)
async def route(request: Request, runtime: CurrentRuntime) -> Response:
    """Dry run: the decision, signals and chosen model for a chat, Responses or Messages
    body (recognised by its fields, or named: `?surface=messages`); calls no upstream."""
    try:
        surface = AnyBodySurface(request.query_params.get("surface"))
    except GatewayError as exc:
        return error_response(exc, {REQUEST_ID_HEADER: request_id_of(request)})
    return await handler.dry_run(surface, runtime, request)


@router.get("/v1/models", tags=["openai"], responses={200: {"model": ModelList}, **errors(401)})
async def list_models(request: Request, runtime: CurrentRuntime) -> Response:
    runtime.engine.auth.check(request.headers.get("authorization"))
    return JSONResponse(
        {"object": "list", "data": _model_entries(runtime)},
        headers={REQUEST_ID_HEADER: request_id_of(request)},
    )


# ``:path``: a configured model's name may hold a slash (``Qwen/Qwen2.5-7B``).
@router.get(
    "/v1/models/{model:path}",
    openapi_extra=MODEL_PATH,
    tags=["openai"],
    responses={200: {"model": ModelEntry}, **errors(401, 404)},
)
async def retrieve_model(request: Request, runtime: CurrentRuntime) -> Response:
    """The entry `GET /v1/models` lists for `auto`, a decision or a model."""
    runtime.engine.auth.check(request.headers.get("authorization"))
    model = request.path_params["model"]
    # The first entry of that name: a decision shadows a model, as in routing.
    entry = next((e for e in _model_entries(runtime) if e["id"] == model), None)
    if entry is None:
        raise NotFoundError(
            f"The model '{model}' does not exist: use 'auto', a decision or a configured "
            "model (GET /v1/models lists them)",
            param="model",
            code="model_not_found",
        )
    return JSONResponse(entry, headers={REQUEST_ID_HEADER: request_id_of(request)})


def _model_entries(runtime: Runtime) -> list[dict[str, Any]]:
    data = [_model_entry(AUTO, "router-proxy")]
    data += [_model_entry(d.name, "router-proxy:decision") for d in runtime.pipeline.decisions]
    data += [_model_entry(name, model.provider) for name, model in runtime.config.models.items()]
    return data


def _model_entry(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


@router.get("/health", tags=["ops"], responses={200: {"model": Status}})
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", tags=["ops"], responses={200: {"model": Status}, **errors(503)})
async def ready(request: Request, runtime: CurrentRuntime) -> Response:
    """Readiness: a config is loaded and its providers are open, and no SIGTERM is
    draining the process (``server.drain_delay``)."""
    if not runtime.started:
        return error_response(ServiceUnavailableError("starting up"))
    if request.app.state.drain.draining:
        return error_response(ServiceUnavailableError("draining: shutting down"))
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    tags=["ops"],
    response_class=PlainTextResponse,
    responses=errors_beside_text(401),
)
async def metrics(request: Request, runtime: CurrentRuntime) -> Response:
    """Prometheus text format; with several workers, the sum over them. Open unless
    ``server.metrics_keys`` is set: then a scrape sends ``Authorization: Bearer KEY``."""
    runtime.metrics_auth.check(request.headers.get("authorization"))
    # Point-in-time views, set when scraped (a breaker turns half-open by time alone).
    runtime.metrics.show_breakers({m: h.breaker for m, h in runtime.health().items()})
    runtime.metrics.shared_state_up.set(1 if runtime.shared_state_up else 0)
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
