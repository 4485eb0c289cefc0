"""An open Anthropic Messages stream read as OpenAI ``chat.completion.chunk`` SSE events.

The event-by-event mapping (and the non-streaming reply's, ``to_openai_completion``) is
pure and lives in ``router_proxy.translate.anthropic_to_chat``; this module does the I/O.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable

import aiohttp

from router_proxy.errors import UpstreamError
from router_proxy.providers.base import StreamStats, UpstreamCall
from router_proxy.providers.http import MAX_NATIVE_EVENT_BYTES, events
from router_proxy.providers.http_provider import reading_stream
from router_proxy.translate.anthropic_to_chat import (
    BadUsage,
    StreamTranslator,
    to_openai_completion,
)
from router_proxy.translate.common import DONE_EVENT

__all__ = ["StreamTranslator", "relay_native", "to_openai_completion", "translate_stream"]


async def translate_stream(
    response: aiohttp.ClientResponse,
    call: UpstreamCall,
    stats: StreamStats,
    *,
    provider: str,
    secrets: Iterable[str],
    bad_usage: BadUsage | None = None,
) -> AsyncGenerator[bytes, None]:
    """OpenAI SSE events for an open Anthropic stream; closes the response at the end."""
    translator = StreamTranslator(call, stats, secrets, bad_usage)
    with reading_stream(response, call, provider) as blocks:
        async for block in blocks:
            for event, data, _raw in events(block):
                for chunk in translator.feed(event, data):
                    yield chunk
                if translator.finished:
                    break
            if translator.finished:
                break
    if not translator.finished:
        raise UpstreamError(f"model '{call.model_name}' stream ended before message_stop")
    yield DONE_EVENT


async def relay_native(
    response: aiohttp.ClientResponse,
    call: UpstreamCall,
    stats: StreamStats,
    *,
    provider: str,
    secrets: Iterable[str],
    bad_usage: BadUsage | None = None,
) -> AsyncGenerator[bytes, None]:
    """An Anthropic stream relayed as it comes (a Messages client asked for it): every
    event is read, to fill ``stats``, to end on ``message_stop`` or an error, and to
    refuse one that is not a JSON object (before it is relayed)."""
    reader = StreamTranslator(call, stats, secrets, bad_usage)  # its chat chunks are not used
    with reading_stream(response, call, provider, MAX_NATIVE_EVENT_BYTES) as blocks:
        async for block in blocks:
            read: list[bytes] = []  # the block's events read so far, whole
            try:
                for event, data, raw in events(block):
                    reader.feed(event, data)
                    read.append(raw)
            except UpstreamError:
                if read:  # what came before the failure still reaches the client
                    yield b"".join(raw + b"\n\n" for raw in read)
                raise
            yield block
            if reader.finished:
                return
    raise UpstreamError(f"model '{call.model_name}' stream ended before message_stop")
