"""Admin endpoints, behind ``server.admin_keys`` (disabled when none are configured)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from router_proxy.cache.store import CacheUnavailableError
from router_proxy.errors import GatewayError, InvalidRequestError, ServiceUnavailableError
from router_proxy.reload import Reloader
from router_proxy.runtime import Runtime
from router_proxy.server.body import read_json_body, validate_body
from router_proxy.server.deps import CurrentRuntime
from router_proxy.server.ids import REQUEST_ID_HEADER, request_id_of
from router_proxy.server.openapi import Reloaded, errors

router = APIRouter(prefix="/admin", tags=["admin"])


class AdminDisabledError(GatewayError):
    status_code = 403
    error_type = "permission_error"
    code = "admin_disabled"


def check_admin(request: Request, runtime: Runtime) -> None:
    admin = runtime.admin_auth
    if not admin.enabled:
        raise AdminDisabledError("Admin endpoints are disabled: set server.admin_keys")
    admin.check(request.headers.get("authorization"))


@router.get("/models", responses=errors(401, 403))
async def model_health(request: Request, runtime: CurrentRuntime) -> Response:
    """Each configured model's circuit breaker, observed latency and recent failures."""
    check_admin(request, runtime)
    models = {
        name: {
            "breaker": health.breaker.name.lower(),
            "available": health.available,
            "retry_after_s": round(health.retry_after, 3),
            "recent_calls": health.recent_calls,
            "recent_failures": health.recent_failures,
            "opened_by_other_replica": health.opened_by_other_replica,
            "latency_ms": round(health.latency * 1000, 3) if health.latency is not None else None,
        }
        for name, health in runtime.health().items()
    }
    return JSONResponse(
        {
            "models": models,
            "shared_state": {
                "backend": runtime.config.state.backend,
                "up": runtime.shared_state_up,
            },
        },
        headers={REQUEST_ID_HEADER: request_id_of(request)},
    )


@router.post("/reload", responses={200: {"model": Reloaded}, **errors(400, 401, 403)})
async def reload_policy(request: Request, runtime: CurrentRuntime) -> Response:
    """Reload the policy file now; an invalid policy is refused and the old one serves."""
    check_admin(request, runtime)
    reloader: Reloader | None = request.app.state.reloader
    if reloader is None:
        raise InvalidRequestError("This gateway was started without a policy file to reload")
    outcome = await reloader.reload("admin")
    if not outcome.ok:
        raise InvalidRequestError(
            "Policy refused; the previous one keeps serving:\n" + "\n".join(outcome.errors),
            code="invalid_config",
        )
    return JSONResponse(
        {"status": "reloaded", "generation": outcome.generation},
        headers={REQUEST_ID_HEADER: request_id_of(request)},
    )


class CachePurge(BaseModel):
    """What ``POST /admin/cache/purge`` drops (``PURGE_SCHEMA`` documents it)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(default=None, min_length=1)
    decision: str | None = Field(default=None, min_length=1)
    all: bool = False


PURGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "tenant": {
            "type": "string",
            "minLength": 1,
            "description": "a client key's id (the first 16 hex digits of the key's "
            "SHA-256), or `anonymous` when no client keys are configured",
        },
        "decision": {"type": "string", "minLength": 1, "description": "a decision's name"},
        "all": {"type": "boolean", "description": "true: every cached answer"},
    },
    "anyOf": [
        {"required": ["tenant"]},
        {"required": ["decision"]},
        {"required": ["all"], "properties": {"all": {"const": True}}},
    ],
}
PURGE_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": PURGE_SCHEMA}}}
}


@router.post("/cache/purge", openapi_extra=PURGE_BODY, responses=errors(400, 401, 403, 503))
async def purge_cache(request: Request, runtime: CurrentRuntime) -> Response:
    """Drop cached answers: one tenant's, one decision's, both, or all of them. With
    Redis, every replica's cached answers go."""
    check_admin(request, runtime)
    raw = await read_json_body(request, runtime.config.server.max_body_bytes)
    purge = validate_body(CachePurge, raw)
    for field in ("tenant", "decision"):
        if field in raw and raw[field] is None:
            raise InvalidRequestError(f"`{field}` is a string when given", param=field)
    if purge.tenant is None and purge.decision is None and not purge.all:
        raise InvalidRequestError("Say what to purge: `tenant`, `decision`, or `all: true`")
    cache = runtime.engine.cache
    try:
        purged = await cache.purge(purge.tenant, purge.decision) if cache is not None else 0
    except CacheUnavailableError as exc:
        raise ServiceUnavailableError("The cache store (Redis) is not answering") from exc
    return JSONResponse(
        {"purged": purged, "tenant": purge.tenant, "decision": purge.decision},
        headers={REQUEST_ID_HEADER: request_id_of(request)},
    )
