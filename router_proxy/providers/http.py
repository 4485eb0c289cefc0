"""What HTTP adapters share: the pooled client, the one place that turns httpx
failures into gateway errors, upstream error bodies, and SSE framing."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from router_proxy.errors import UpstreamError, UpstreamStatusError, UpstreamTimeoutError

DONE_EVENT = b"data: [DONE]\n\n"


def pooled_client(
    *,
    base_url: str,
    headers: dict[str, str],
    max_connections: int,
    connect_timeout: float,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        ),
        timeout=httpx.Timeout(60.0, connect=connect_timeout),
        # Never read proxy settings or .netrc from the environment: a gateway must
        # talk to exactly the upstream its config names.
        trust_env=False,
    )


@functools.lru_cache(maxsize=256)  # a handful of distinct values per config
def call_timeout(idle: float, connect: float) -> httpx.Timeout:
    """httpx bounds each read by ``idle`` (the first byte, then every gap); the whole
    call's ``total`` is the caller's asyncio deadline."""
    return httpx.Timeout(idle, connect=min(connect, idle))


async def lines_within(response: httpx.Response, total: float, model: str) -> AsyncIterator[str]:
    """A stream's lines, ended by a timeout error once ``total`` seconds have passed
    (httpx only bounds each read; a trickling stream would otherwise run forever)."""
    deadline = time.monotonic() + total
    async for line in response.aiter_lines():
        if time.monotonic() > deadline:
            raise UpstreamTimeoutError(f"model '{model}' stream exceeded its total timeout")
        yield line


@contextmanager
def translate_errors(provider: str, model: str) -> Iterator[None]:
    """Map httpx transport failures to gateway errors; the message names the model,
    never the URL's credentials or the request headers."""
    try:
        yield
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise UpstreamTimeoutError(
            f"model '{model}' (provider '{provider}') timed out: {type(exc).__name__}"
        ) from exc
    except httpx.HTTPError as exc:
        error = UpstreamError(
            f"model '{model}' (provider '{provider}') is unreachable: {type(exc).__name__}"
        )
        error.transport = isinstance(exc, httpx.TransportError)
        raise error from exc
    except AttributeError as exc:
        if not _raised_by_network_stack(exc):
            raise  # our own bug: let it surface
        error = UpstreamError(
            f"model '{model}' (provider '{provider}') is unreachable: connection reset"
        )
        error.transport = True
        raise error from exc


# An upstream that resets a connection right after accepting it can make httpcore's
# post-connect check (``get_extra_info("ssl_object")``) fail inside anyio with
# AttributeError (the closed transport has no socket) instead of a network error.
_NETWORK_STACK = ("anyio", "httpcore", "httpx")


def _raised_by_network_stack(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is in anyio, httpcore or httpx."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module.split(".")[0] in _NETWORK_STACK


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove secrets an upstream may echo back (e.g. a key in an auth error)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def upstream_error_message(body: bytes) -> str:
    """The human message inside an upstream's error body (OpenAI or Anthropic shape)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace").strip() or "no body"
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return "unrecognised error body"


def status_error(
    response: httpx.Response, body: bytes, *, model: str, secrets: Iterable[str]
) -> UpstreamStatusError:
    message = scrub(upstream_error_message(body), secrets)
    headers = {}
    retry_after = response.headers.get("retry-after")
    if retry_after is not None:
        headers["retry-after"] = retry_after
    return UpstreamStatusError(
        f"model '{model}' upstream returned {response.status_code}: {message}",
        upstream_status=response.status_code,
        headers=headers,
    )


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs from SSE lines; multi-line data joined with newlines."""
    event = "message"
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
        # ":" comments and id:/retry: fields carry nothing the gateway needs.
    if data:
        yield event, "\n".join(data)
