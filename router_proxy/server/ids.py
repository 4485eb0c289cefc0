"""Request ids: the client's ``x-request-id`` when it is sane, else a fresh one."""

from __future__ import annotations

import re

from starlette.requests import Request

from router_proxy.engine.record import REQUEST_ID_HEADER
from router_proxy.ids import unique_hex

__all__ = ["REQUEST_ID_HEADER", "request_id_of"]

_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(request: Request) -> str:
    """The id for this request, made once and kept on the request's scope."""
    found = request.scope.get("router_request_id")
    if isinstance(found, str):
        return found
    incoming = request.headers.get("x-request-id", "")
    request_id = incoming if _SANE.match(incoming) else unique_hex()
    request.scope["router_request_id"] = request_id
    return request_id
