"""Admin endpoints, behind ``server.admin_keys`` (disabled when none are configured)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from router_proxy.errors import GatewayError, InvalidRequestError
from router_proxy.reload import Reloader
from router_proxy.runtime import Runtime
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
