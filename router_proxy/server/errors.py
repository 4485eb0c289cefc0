"""Every error leaves as OpenAI-format JSON: ``{"error": {message, type, param, code}}``.

This is the HTTP boundary, the one place that catches ``Exception``: an unexpected bug
becomes a logged 500 with a plain message, never a traceback sent to a client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from router_proxy.engine.record import SDK_REQUEST_ID_HEADER
from router_proxy.errors import (
    GatewayError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
)
from router_proxy.server.ids import REQUEST_ID_HEADER, request_id_of

logger = logging.getLogger("router_proxy.server")


class NoAnswer(Response):
    """The answer to a request whose client is gone: nothing is sent (uvicorn knows the
    connection is lost and writes nothing either)."""

    def __init__(self) -> None:
        super().__init__(status_code=499)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


def internal_error(request_id: str) -> GatewayError:
    """The 500 of an unexpected error: a plain message, the id to quote, no detail."""
    return GatewayError(f"Internal error; quote request id {request_id} when reporting it")


def error_response(exc: GatewayError, headers: dict[str, str] | None = None) -> Response:
    headers = {**exc.headers, **(headers or {})}
    if REQUEST_ID_HEADER in headers:  # also under the name the OpenAI SDK reads
        headers.setdefault(SDK_REQUEST_ID_HEADER, headers[REQUEST_ID_HEADER])
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc, {REQUEST_ID_HEADER: request_id_of(request)})

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: GatewayError
        if exc.status_code == 404:
            error = NotFoundError(f"Unknown path: {request.method} {request.url.path}")
        elif exc.status_code == 405:
            error = MethodNotAllowedError(f"Method {request.method} is not allowed here")
        else:
            error = InvalidRequestError(str(exc.detail))
            error.status_code = exc.status_code
        return error_response(error, {REQUEST_ID_HEADER: request_id_of(request)})

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        return error_response(
            InvalidRequestError("Invalid request parameters"),
            {REQUEST_ID_HEADER: request_id_of(request)},
        )

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        return NoAnswer()

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette sends this answer, then raises the error on to the server, which would
        # close the connection: GatewayApp keeps it open (a finished answer is whole).
        request_id = request_id_of(request)
        logger.exception("unhandled error (request %s)", request_id)
        return error_response(internal_error(request_id), {REQUEST_ID_HEADER: request_id})

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
