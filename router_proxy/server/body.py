"""Reading a JSON body under a size and depth limit, and validating a chat request with
errors that name the offending field."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from router_proxy.config.errors import format_path
from router_proxy.errors import InvalidRequestError, PayloadTooLargeError
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.resources import CpuPool
from router_proxy.server.connection import connection_of, gone_error

Body_T = TypeVar("Body_T", bound=BaseModel)

# Nesting a body may have. The body is encoded again on its way upstream, and orjson
# refuses more than 254 levels there; translations add a level or two, and nothing a
# client sends to a model (tool schemas included) comes near this.
MAX_JSON_DEPTH = 128


# A body this large is parsed in the CPU pool when one is given: parsing megabytes holds
# the event loop for milliseconds (the pool's threads hand the GIL back every 1 ms).
OFFLOAD_BODY_BYTES = 1024 * 1024


async def read_json_body(
    request: Request, limit: int, pool: CpuPool | None = None
) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequestError("Invalid Content-Length header")
        if int(declared) > limit:
            raise _too_large(limit)
    body = await _read(request, limit)
    if not body:
        raise InvalidRequestError("The request body is empty; send a JSON object")
    try:
        if pool is not None and len(body) > OFFLOAD_BODY_BYTES:
            data = await pool.run(orjson.loads, body)
        else:
            data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object")
    # Nesting cannot exceed the number of brackets: most bodies need no walk at all.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _too_deep(data):
        raise InvalidRequestError(
            f"The request body is nested more than {MAX_JSON_DEPTH} levels deep",
            code="json_too_deep",
        )
    return data


async def _read(request: Request, limit: int) -> bytes:
    # ASGI messages read directly: Starlette's ``request.stream()`` is an async generator
    # around the same loop, and most bodies come in one message.
    receive, size = request.receive, 0
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise gone_error(connection_of(request.scope))
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # a chunked body that never declared its length
            raise _too_large(limit)
        if not message.get("more_body", False):
            return b"".join((*chunks, chunk)) if chunks else chunk
        chunks.append(chunk)


def _too_deep(data: dict[str, Any]) -> bool:
    """Whether ``data`` nests objects and arrays more than MAX_JSON_DEPTH levels."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, dict | list):
                if depth >= MAX_JSON_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"Request body is larger than the limit of {limit} bytes")


def parse_chat_request(data: dict[str, Any], max_messages: int) -> ChatCompletionRequest:
    messages = data.get("messages")
    if isinstance(messages, list) and len(messages) > max_messages:  # before validating them
        raise InvalidRequestError(
            f"Invalid value for 'messages': {len(messages)} messages is more than the limit "
            f"of {max_messages}",
            param="messages",
            code="too_many_messages",
        )
    return validate_body(ChatCompletionRequest, data)


def validate_body(model: type[Body_T], data: dict[str, Any]) -> Body_T:
    """``data`` as ``model``; a 400 naming the first bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(part for part in err["loc"] if not _is_type_tag(part))
        param = format_path(loc)
        message = err["msg"]
        if err["type"] == "missing":
            message = "Field required"
        elif err["type"] == "model_type":  # pydantic names its class here
            message = "Input should be an object"
        raise InvalidRequestError(f"Invalid value for '{param}': {message}", param=param) from None


def _is_type_tag(part: int | str) -> bool:
    # Union member names pydantic puts in locs, e.g. "str", "list[dict[str,any]]" or
    # "constrained-str".
    return isinstance(part, str) and (
        part in {"str", "int", "float", "bool"} or "[" in part or part.startswith("constrained-")
    )
