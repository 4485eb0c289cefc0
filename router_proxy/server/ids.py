"""Request ids: the client's ``x-request-id`` when it is sane, else a fresh one."""

from __future__ import annotations

import itertools
import os
import re

from starlette.requests import Request

from router_proxy.engine.record import REQUEST_ID_HEADER

__all__ = ["REQUEST_ID_HEADER", "request_id_of"]

_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# 32 hex digits like uuid4().hex: 64 random bits drawn once per process (so replicas and
# workers never collide) and a counter. A UUID per request was a measurable share of the
# fast path's cost (a getrandom call and the UUID object).
_prefix = ""
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8).hex()
    _counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


_reseed()
os.register_at_fork(after_in_child=_reseed)  # a forked worker must not repeat our ids


def new_request_id() -> str:
    return f"{_prefix}{next(_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def request_id_of(request: Request) -> str:
    """The id for this request, made once and kept on the request's scope."""
    found = request.scope.get("router_request_id")
    if isinstance(found, str):
        return found
    incoming = request.headers.get("x-request-id", "")
    request_id = incoming if _SANE.match(incoming) else new_request_id()
    request.scope["router_request_id"] = request_id
    return request_id
