"""What HTTP adapters share: the one place that turns aiohttp failures into gateway
errors, upstream error bodies, and SSE framing (whole events out of upstream buffers)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson

from router_proxy.errors import (
    UPSTREAM_CLIENT_STATUSES,
    UpstreamDetail,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from router_proxy.translate.common import parse_event, scrub

# An event this large without its blank line is not an event stream we can relay: the
# stream fails (before its first byte: the next candidate is tried). A chat chunk or an
# Anthropic event carries a delta: a few KB, and even a whole tool call's arguments at a
# model's output limit is under 1 MB. A native stream's events can carry whole things: a
# Responses stream's last event repeats the answer (generated images included), an
# Anthropic server tool's result block a fetched document.
MAX_EVENT_BYTES = 4 * 1024 * 1024
MAX_NATIVE_EVENT_BYTES = 16 * 1024 * 1024


@contextmanager
def translate_errors(provider: str, model: str) -> Iterator[None]:
    """Map aiohttp transport failures to gateway errors; the message names the model,
    never the URL's credentials or the request headers."""
    try:
        yield
    except TimeoutError as exc:  # also aiohttp's ServerTimeoutError and its subclasses
        raise UpstreamTimeoutError(
            f"model '{model}' (provider '{provider}') timed out: {type(exc).__name__}"
        ) from exc
    except (aiohttp.ClientError, ConnectionError) as exc:
        error = UpstreamError(
            f"model '{model}' (provider '{provider}') is unreachable: {type(exc).__name__}"
        )
        # Refused, reset, dropped or cut short: the connection failed, not the model.
        error.transport = isinstance(
            exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | ConnectionError
        )
        raise error from exc


def upstream_error_message(body: bytes) -> str:
    """The human message inside an upstream's error body (OpenAI or Anthropic shape)."""
    return upstream_error_fields(body)[0]


def upstream_error_fields(body: bytes) -> tuple[str, UpstreamDetail | None]:
    """The message, and the type, param and code, of an upstream's error body: OpenAI's
    ``{"error": {message, type, param, code}}`` (vLLM's may come unwrapped), or
    Anthropic's ``{"type": "error", "error": {type, message}}``, which has no param or
    code: its type (``not_found_error``, ...) becomes the code. A code that is not a
    string (vLLM repeats the status as a number) is left out. No detail for a body
    that is not an error object (HTML from a proxy, a bare string)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace").strip() or "no body", None
    err = data.get("error", data) if isinstance(data, dict) else None
    if isinstance(err, str):
        return err, None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return "unrecognised error body", None
    if data.get("type") == "error":
        return err["message"], UpstreamDetail(code=_text(err.get("type")))
    fields = (_text(err.get(name)) for name in ("type", "param", "code"))
    return err["message"], UpstreamDetail(*fields)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# Passed on with an upstream's error: when to try again, and its rate-limit accounting
# (OpenAI's x-ratelimit-*, Anthropic's anthropic-ratelimit-*). The retry policy reads
# retry-after too.
_PASSED_HEADERS = frozenset({"retry-after", "retry-after-ms"})
_PASSED_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


def passed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    passed = {}
    for name, value in headers.items():
        key = name.lower()
        # ASCII only: a header we send must encode as latin-1.
        if (key in _PASSED_HEADERS or key.startswith(_PASSED_PREFIXES)) and value.isascii():
            passed[key] = value
    return passed


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, *, model: str, secrets: Iterable[str]
) -> UpstreamStatusError:
    """A client status keeps the upstream's message first (as the upstream wrote it) and
    its type, param and code; any other status (a redirect too) is the upstream's
    failure, said as such."""
    secrets = tuple(secrets)
    message, detail = upstream_error_fields(body)
    message = scrub(message, secrets)
    if status in UPSTREAM_CLIENT_STATUSES:
        message = f"{message} (model '{model}')"
    elif 300 <= status < 400:  # never followed: the call's key would go where it points
        message = f"model '{model}' upstream answered a redirect ({status}), not followed"
    else:
        message = f"model '{model}' upstream returned {status}: {message}"
    return UpstreamStatusError(
        message,
        upstream_status=status,
        headers=passed_headers(headers),
        upstream=_scrub_detail(detail, secrets),
    )


def _scrub_detail(detail: UpstreamDetail | None, secrets: tuple[str, ...]) -> UpstreamDetail | None:
    def clean(value: str | None) -> str | None:
        return None if value is None else scrub(value, secrets)

    if detail is None:
        return None
    return UpstreamDetail(clean(detail.type), clean(detail.param), clean(detail.code))


async def event_blocks(
    content: aiohttp.StreamReader, total: float, model: str, max_event: int = MAX_EVENT_BYTES
) -> AsyncIterator[bytes]:
    """The upstream's bytes as they arrive, cut after the last complete SSE event, so
    each block holds whole events (``\\n``-separated lines; CRLF is normalised). Ends
    with a timeout error once ``total`` seconds have passed: aiohttp bounds each read
    only, and a trickling stream would otherwise run forever; and with an error once one
    event has grown past ``max_event`` bytes without its end.

    Linear in the bytes read, and an event's memory is its own size: the reads of an
    unfinished event are kept as they came (joined once, when it ends), and only each
    new read is searched for its end."""
    deadline = time.monotonic() + total
    pending: list[bytes] = []  # the reads of an event whose end has not come yet
    size = 0
    carry = False  # the last read ended with "\r": its "\n" may start the next one
    async for data in content.iter_any():
        if time.monotonic() > deadline:
            raise UpstreamTimeoutError(f"model '{model}' stream exceeded its total timeout")
        if carry:
            data, carry = b"\r" + data, False
        if b"\r" in data:
            if data.endswith(b"\r"):
                data, carry = data[:-1], True
            data = data.replace(b"\r\n", b"\n")
        cut = data.rfind(b"\n\n")
        if cut >= 0:
            end = cut + 2
        elif pending and data[:1] == b"\n" and pending[-1][-1:] == b"\n":
            end = 1  # the blank line ending the event spans the two reads
        else:
            if data:
                pending.append(data)
                size += len(data)
            if size > max_event:
                raise UpstreamError(f"model '{model}' sent an event over {max_event} bytes")
            continue
        head = data if end == len(data) else data[:end]
        block = b"".join([*pending, head]) if pending else head
        pending.clear()
        size = len(data) - end
        if size:
            pending.append(data[end:])
            if size > max_event:
                raise UpstreamError(f"model '{model}' sent an event over {max_event} bytes")
        yield block
    rest = b"".join(pending) + (b"\r" if carry else b"")
    if rest.strip():  # the last event, without its closing blank line
        yield rest.rstrip(b"\n") + b"\n\n"


def events(block: bytes) -> Iterator[tuple[str, bytes, bytes]]:
    """(event, data, raw) for each event of a block from ``event_blocks``: multi-line
    data joined with newlines, the raw event without its blank line; comments and
    id:/retry: fields carry nothing we need, and an event without data is skipped."""
    for raw in block.split(b"\n\n"):
        if raw.startswith(b"data: ") and b"\n" not in raw:  # one data line: most events
            yield "message", raw[6:], raw
        elif raw and (parsed := parse_event(raw)) is not None:
            yield *parsed, raw
