"""The API surfaces' routes served as plain ASGI, in front of FastAPI.

FastAPI's routing, middleware stack and request wrapping cost more per request than the
gateway's whole routing pipeline (benchmarks/overhead/README.md), so ``GatewayApp`` sends
``POST`` to a surface's path straight to its endpoint and everything else (models,
admin, metrics, health, the OpenAPI document) through FastAPI as before. The surfaces'
routes stay declared in FastAPI too: they document the API and serve it if this path is
bypassed. The same CORS middleware wraps each endpoint, so browsers see no difference.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router_proxy.runtime import RuntimeSlot
from router_proxy.server.errors import error_response, internal_error
from router_proxy.server.ids import REQUEST_ID_HEADER, request_id_of
from router_proxy.server.surfaces import handler
from router_proxy.server.surfaces.base import Surface

logger = logging.getLogger("router_proxy.server")


class GatewayApp(FastAPI):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.fast_routes: dict[str, ASGIApp] = {}  # path -> endpoint, for POST

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if scope["method"] == "POST":
            endpoint = self.fast_routes.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        answer = _Answer(send)
        try:
            await super().__call__(scope, receive, answer.send)
        except Exception:
            # Starlette raises an error on after its 500 has been sent (our handler has
            # logged it); uvicorn would then log it again and close the connection, and the
            # client's next request on it would be lost. A whole answer keeps it open; a
            # cut one must close it.
            if not answer.complete:
                raise


class _Answer:
    """Whether the answer to a request has been sent whole."""

    __slots__ = ("_send", "complete")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.complete = False

    async def send(self, message: Message) -> None:
        await self._send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True


class SurfaceEndpoint:
    """One surface's route: the runtime serving now, the handler's steps, and the HTTP
    boundary's last resort (an unexpected error is a logged 500, never a traceback)."""

    def __init__(self, surface: type[Surface], slot: RuntimeSlot) -> None:
        self.surface = surface  # one instance per request
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await handler.serve(self.surface(), self.slot.current, request)
        except Exception:  # outside the handler's own boundary (it logs and answers)
            request_id = request_id_of(request)
            logger.exception("unhandled error (request %s)", request_id)
            response = error_response(internal_error(request_id), {REQUEST_ID_HEADER: request_id})
        await response(scope, receive, send)
