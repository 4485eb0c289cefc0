"""The Responses API spoken natively by an OpenAI-compatible upstream (``responses_api:
true``): a ``/v1/responses`` client's body goes to ``{base_url}/responses`` untranslated
and the answer, or the stream's typed events, come back as they are. Only the events
that end a response (and errors) are read, for usage and the finish."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Any

import aiohttp
import orjson

from router_proxy.errors import UpstreamError
from router_proxy.protocol import Usage
from router_proxy.providers.base import StreamStats, UpstreamCall
from router_proxy.providers.http import (
    event_blocks,
    events,
    translate_errors,
    upstream_error_message,
)
from router_proxy.providers.http_provider import close_response
from router_proxy.translate.common import scrub

RESPONSES_PATH = "responses"
_ENDS = {"response.completed", "response.incomplete"}
_FAILS = {"response.failed", "error"}


def responses_usage(response: Any) -> Usage | None:
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(
        prompt_tokens=int(usage.get("input_tokens") or 0),
        completion_tokens=int(usage.get("output_tokens") or 0),
    )


async def relay_responses(
    response: aiohttp.ClientResponse,
    call: UpstreamCall,
    stats: StreamStats,
    *,
    provider: str,
    secrets: Iterable[str],
) -> AsyncGenerator[bytes, None]:
    try:
        with translate_errors(provider, call.model_name):
            blocks = event_blocks(response.content, call.timeouts.total, call.model_name)
            async for block in blocks:
                if (
                    b"response.completed" in block
                    or b"response.incomplete" in block
                    or (b"failed" in block or b"error" in block)
                ):
                    before = _read_ends(block, call, stats, secrets)
                    if isinstance(before, UpstreamError):
                        raise before
                yield block
                if stats.finish_reason is not None:
                    return
        raise UpstreamError(f"model '{call.model_name}' ended its stream before finishing")
    finally:
        close_response(response)


def _read_ends(
    block: bytes, call: UpstreamCall, stats: StreamStats, secrets: Iterable[str]
) -> UpstreamError | None:
    """Usage and finish from the event that ends the response; the error a failure
    event carries (the surface then ends the stream with its own failure event)."""
    for event, data, _raw in events(block):
        kind = event if event != "message" else _type_of(data)
        if kind in _FAILS:
            message = scrub(upstream_error_message(data.encode()), secrets)
            return UpstreamError(f"model '{call.model_name}' failed mid-stream: {message}")
        if kind in _ENDS:
            payload = orjson.loads(data)
            stats.usage = responses_usage(payload.get("response"))
            stats.finish_reason = "stop" if kind == "response.completed" else "length"
    return None


def _type_of(data: str) -> str:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    return str(payload.get("type", "")) if isinstance(payload, dict) else ""
