"""The HTTP routes: OpenAI-compatible API, dry-run routing, health and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from router_proxy.config.references import AUTO
from router_proxy.errors import ServiceUnavailableError
from router_proxy.runtime import Runtime, RuntimeSlot
from router_proxy.server.errors import error_response
from router_proxy.server.exchange import Exchange
from router_proxy.server.ids import REQUEST_ID_HEADER, request_id_of
from router_proxy.server.openapi import (
    CHAT_BODY,
    STREAM,
    ChatCompletion,
    ModelList,
    RoutePlanBody,
    Status,
    errors,
)

router = APIRouter()


def runtime_of(request: Request) -> Runtime:
    """The runtime serving now; a request keeps the one it started with."""
    slot: RuntimeSlot = request.app.state.slot
    return slot.current


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
    return await Exchange(runtime_of(request), request).respond()


@router.post(
    "/v1/route",
    openapi_extra=CHAT_BODY,
    tags=["routing"],
    responses={200: {"model": RoutePlanBody}, **errors(400, 401, 404, 413)},
)
async def route(request: Request) -> Response:
    """Dry run: the decision, signals and chosen model for a chat body; calls no upstream."""
    exchange = Exchange(runtime_of(request), request)
    _, plan = await exchange.route()
    return JSONResponse(plan.to_dict(), headers=exchange.headers())


@router.get("/v1/models", tags=["openai"], responses={200: {"model": ModelList}, **errors(401)})
async def list_models(request: Request) -> Response:
    runtime = runtime_of(request)
    runtime.auth.check(request.headers.get("authorization"))
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
async def ready(request: Request) -> Response:
    """Readiness: a config is loaded and its providers are open, and no SIGTERM is
    draining the process (``server.drain_delay``)."""
    if not runtime_of(request).started:
        return error_response(ServiceUnavailableError("starting up"))
    if request.app.state.drain.draining:
        return error_response(ServiceUnavailableError("draining: shutting down"))
    return JSONResponse({"status": "ready"})


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus text format; with several workers, the sum over them."""
    runtime = runtime_of(request)
    resources = runtime.resources
    # Point-in-time views, set when scraped (a breaker turns half-open by time alone).
    runtime.metrics.show_breakers(
        {m: resources.breakers.get(m).state() for m in runtime.config.models}
    )
    runtime.metrics.shared_state_up.set(1 if resources.shared.healthy else 0)
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
