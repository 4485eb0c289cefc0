"""The Responses API spoken natively by an OpenAI-compatible upstream (``responses_api:
true``): a ``/v1/responses`` client's body goes to ``{base_url}/responses`` untranslated
and the answer, or the stream's typed events, come back as they are. Every event is
parsed (a malformed one is a failure); those that end a response (and errors) are read
for usage and the finish."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import aiohttp
import orjson

from router_proxy.errors import UpstreamError
from router_proxy.protocol import MalformedUsage, Usage, usage_object, usage_tokens
from router_proxy.providers.base import StreamStats, UpstreamCall
from router_proxy.providers.http import (
    MAX_NATIVE_EVENT_BYTES,
    events,
    upstream_error_message,
)
from router_proxy.providers.http_provider import reading_stream
from router_proxy.translate.common import scrub

RESPONSES_PATH = "responses"
RESPONSES_FORMAT = "openai.responses"  # the wire format a Responses client speaks
_ENDS = {"response.completed", "response.incomplete"}
_FAILS = {"response.failed", "error"}


def responses_usage(response: Any) -> Usage | None:
    """A ``response`` object's usage; MalformedUsage when its counts are not counts."""
    usage = usage_object(response.get("usage")) if isinstance(response, dict) else None
    if usage is None:
        return None
    return Usage(
        prompt_tokens=usage_tokens(usage, "input_tokens"),
        completion_tokens=usage_tokens(usage, "output_tokens"),
    )


async def relay_responses(
    response: aiohttp.ClientResponse,
    call: UpstreamCall,
    stats: StreamStats,
    *,
    provider: str,
    secrets: Iterable[str],
    bad_usage: Callable[[str], None],
) -> AsyncGenerator[bytes, None]:
    """The upstream's events relayed in the blocks they arrive in, each one read: an
    event that is not a JSON object ends the stream as a failure."""
    with reading_stream(response, call, provider, MAX_NATIVE_EVENT_BYTES) as blocks:
        async for block in blocks:
            before, failure = _read(block, call, stats, secrets, bad_usage)
            if failure is not None:
                if before:  # what came before the failure still reaches the client
                    yield before
                raise failure
            yield block
            if stats.finish_reason is not None:
                return
    raise UpstreamError(f"model '{call.model_name}' ended its stream before finishing")


def _read(
    block: bytes,
    call: UpstreamCall,
    stats: StreamStats,
    secrets: Iterable[str],
    bad_usage: Callable[[str], None],
) -> tuple[bytes, UpstreamError | None]:
    """Usage and finish from the event that ends the response; the failure a failure
    event, or a malformed one, is (the surface then ends the stream with its own), and
    the block's events before it."""
    read: list[bytes] = []
    for event, data, raw in events(block):
        failure = _read_event(event, data, call, stats, secrets, bad_usage)
        if failure is not None:
            return b"".join(raw + b"\n\n" for raw in read), failure
        read.append(raw)
    return b"", None


def _read_event(
    event: str,
    data: bytes,
    call: UpstreamCall,
    stats: StreamStats,
    secrets: Iterable[str],
    bad_usage: Callable[[str], None],
) -> UpstreamError | None:
    if data == b"[DONE]":
        return None
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        payload = None
    if type(payload) is not dict:
        return UpstreamError(
            f"model '{call.model_name}' sent a stream event that is not a JSON object"
        )
    kind = event if event != "message" else str(payload.get("type", ""))
    if kind in _FAILS:
        message = scrub(upstream_error_message(data), secrets)
        return UpstreamError(f"model '{call.model_name}' failed mid-stream: {message}")
    if kind in _ENDS:
        try:
            stats.usage = responses_usage(payload.get("response"))
        except MalformedUsage as exc:
            bad_usage(str(exc))
        stats.finish_reason = "stop" if kind == "response.completed" else "length"
    return None
