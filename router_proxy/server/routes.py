"""The HTTP routes: OpenAI-compatible API, dry-run routing, health and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from router_proxy.config.references import AUTO
from router_proxy.errors import ServiceUnavailableError
from router_proxy.server.deps import CurrentRuntime, current_runtime
from router_proxy.server.errors import error_response
from router_proxy.server.ids import REQUEST_ID_HEADER, request_id_of
from router_proxy.server.openapi import (
    CHAT_BODY,
    RESPONSES_BODY,
    RESPONSES_STREAM,
    ROUTE_BODY,
    STREAM,
    ChatCompletion,
    ModelList,
    ResponseObject,
    RoutePlanBody,
    Status,
    errors,
)
from router_proxy.server.surfaces import handler
from router_proxy.server.surfaces.base import Surface
from router_proxy.server.surfaces.chat import CHAT
from router_proxy.server.surfaces.detect import EITHER_BODY
from router_proxy.server.surfaces.responses import ResponsesSurface

router = APIRouter()

# Served by the fast path (server/fast_path.py); declared below for the OpenAPI document.
SURFACE_ROUTES: dict[str, Surface] = {"/v1/chat/completions": CHAT}


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
    return await handler.serve(CHAT, await current_runtime(request), request)


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
    # A surface instance per request: the answer echoes the request's settings.
    return await handler.serve(ResponsesSurface(), await current_runtime(request), request)


@router.post(
    "/v1/route",
    openapi_extra=ROUTE_BODY,
    tags=["routing"],
    responses={200: {"model": RoutePlanBody}, **errors(400, 401, 404, 413)},
)
async def route(request: Request, runtime: CurrentRuntime) -> Response:
    """Dry run: the decision, signals and chosen model for a chat body or a Responses body
    (``input`` without ``messages``); calls no upstream."""
    return await handler.dry_run(EITHER_BODY, runtime, request)


@router.get("/v1/models", tags=["openai"], responses={200: {"model": ModelList}, **errors(401)})
async def list_models(request: Request, runtime: CurrentRuntime) -> Response:
    runtime.engine.auth.check(request.headers.get("authorization"))
    data = [_model_entry(AUTO, "router-proxy")]
    data += [_model_entry(d.name, "router-proxy:decision") for d in runtime.pipeline.decisions]
    data += [_model_entry(name, model.provider) for name, model in runtime.config.models.items()]
    return JSONResponse(
        {"object": "list", "data": data}, headers={REQUEST_ID_HEADER: request_id_of(request)}
    )


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


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
async def metrics(runtime: CurrentRuntime) -> Response:
    """Prometheus text format; with several workers, the sum over them."""
    # Point-in-time views, set when scraped (a breaker turns half-open by time alone).
    runtime.metrics.show_breakers({m: h.breaker for m, h in runtime.health().items()})
    runtime.metrics.shared_state_up.set(1 if runtime.shared_state_up else 0)
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
