"""Errors a request can end in, each carrying its OpenAI-format rendering.

Providers translate transport failures (aiohttp) into these with ``raise ... from exc``;
the HTTP layer renders them as ``{"error": {"message", "type", "param", "code"}}``.

GatewayError                      500 (only as a base; never raised itself)
├── InvalidRequestError           400 invalid_request_error
├── AuthenticationError           401 authentication_error
├── NotFoundError                 404 invalid_request_error / model_not_found
├── MethodNotAllowedError         405
├── RequestTimeoutError           408 (headers or body not received in time)
├── PayloadTooLargeError          413
├── HeaderTooLargeError           431 (request line and headers; from the HTTP protocol)
├── ClientClosedRequestError      499 (the client left before its answer; logged only)
├── RateLimitError                429 rate_limit_error (the gateway's own limits)
├── UpstreamError                 502 upstream_error (connect failure, bad reply)
│   ├── UpstreamStatusError       upstream answered an error status; client errors
│   │                             (400/404/413/422/429) keep their status and the
│   │                             upstream's type, param and code; others 502
│   └── UpstreamTimeoutError      504
└── ServiceUnavailableError       503 (starting up; no candidate could answer)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class GatewayError(Exception):
    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class NotFoundError(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowedError(GatewayError):
    status_code = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeoutError(GatewayError):
    status_code = 408
    error_type = "invalid_request_error"
    code = "request_timeout"


class ClientClosedRequestError(GatewayError):
    """The client closed its connection before its answer: nobody reads the response,
    but the access log and metrics say what happened (nginx's 499)."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_disconnected"


class PayloadTooLargeError(GatewayError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class HeaderTooLargeError(GatewayError):
    status_code = 431
    error_type = "invalid_request_error"
    code = "request_header_fields_too_large"


class RateLimitError(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"
    # The connection failed (refused, reset, dropped): safe to try the same model again.
    transport = False


# Upstream statuses that describe the client's request, not the upstream's health:
# passing them through tells the caller what to fix.
UPSTREAM_CLIENT_STATUSES = frozenset({400, 404, 413, 422, 429})


@dataclass(frozen=True, slots=True)
class UpstreamDetail:
    """An upstream error body's own fields, as it sent them (secrets scrubbed); None
    where it sent none. ``type`` None: the gateway's type for the status is shown."""

    type: str | None = None
    param: str | None = None
    code: str | None = None


class UpstreamStatusError(UpstreamError):
    """The upstream answered an error status. For a client status the client sees that
    status and the upstream's own type, param and code (SDKs match on them); ``code``
    stays the gateway's bounded name, since metrics label with it and the upstream
    chooses its codes."""

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int,
        headers: dict[str, str] | None = None,
        upstream: UpstreamDetail | None = None,
    ):
        code = "rate_limit_exceeded" if upstream_status == 429 else "upstream_error"
        super().__init__(message, code=code, headers=headers)
        self.upstream_status = upstream_status
        self.upstream: UpstreamDetail | None = None
        if upstream_status in UPSTREAM_CLIENT_STATUSES:
            self.status_code = upstream_status
            self.error_type = (
                "rate_limit_error" if upstream_status == 429 else "invalid_request_error"
            )
            self.upstream = upstream

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if self.upstream is not None:
            error = body["error"]
            error["type"] = self.upstream.type or self.error_type
            error["param"] = self.upstream.param
            error["code"] = self.upstream.code
        return body


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    error_type = "timeout_error"
    code = "upstream_timeout"


class ServiceUnavailableError(GatewayError):
    status_code = 503
    error_type = "service_unavailable"
    code = "service_unavailable"
