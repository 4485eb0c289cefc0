"""Any OpenAI-compatible server: OpenAI, vLLM, Ollama, llama.cpp, LM Studio, OpenRouter.

The client's JSON goes upstream as sent, with only ``model`` replaced, so parameters the
gateway does not know pass through untouched; replies come back byte for byte.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, Literal

import aiohttp
import orjson
from pydantic import Field, SecretStr

from router_proxy.config.base import ProviderConfigBase
from router_proxy.errors import UpstreamError
from router_proxy.protocol import Endpoint, MalformedUsage, Usage, usage_object, usage_tokens
from router_proxy.providers.base import (
    ChatStream,
    Completion,
    StreamStats,
    UpstreamCall,
)
from router_proxy.providers.http import (
    events,
    upstream_error_message,
)
from router_proxy.providers.http_provider import HTTPProvider, reading_stream
from router_proxy.providers.openai_responses import (
    RESPONSES_FORMAT,
    RESPONSES_PATH,
    relay_responses,
    responses_usage,
)
from router_proxy.translate.common import DONE_EVENT, scrub

# Each endpoint's path under the base URL.
PATHS: dict[Endpoint, str] = {
    "chat": "chat/completions",
    "completions": "completions",
    "embeddings": "embeddings",
}


class OpenAIProviderConfig(ProviderConfigBase):
    type: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://", description="e.g. http://vllm:8000/v1")
    api_key: SecretStr | None = None
    stream_usage: bool = Field(
        default=True,
        description="ask for token usage on streams (stream_options.include_usage) so "
        "cost metrics count them; the extra chunk is hidden from clients that did not ask. "
        "Turn off for servers that reject stream_options",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra headers sent upstream (treated as secrets)"
    )
    responses_api: bool = Field(
        default=False,
        description="the upstream speaks OpenAI's Responses API (OpenAI itself, recent vLLM): "
        "/v1/responses requests go to {base_url}/responses untranslated",
    )


def _usage(data: dict[str, Any]) -> Usage | None:
    """The answer's or chunk's usage; MalformedUsage when its counts are not counts."""
    usage = usage_object(data.get("usage"))
    if usage is None:
        return None
    return Usage(
        prompt_tokens=usage_tokens(usage, "prompt_tokens"),
        completion_tokens=usage_tokens(usage, "completion_tokens"),
    )


class OpenAIProvider(HTTPProvider):
    config_model = OpenAIProviderConfig
    config: OpenAIProviderConfig
    endpoints = frozenset(PATHS)

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def default_headers(self) -> dict[str, str]:
        headers = {k: v.get_secret_value() for k, v in self.config.headers.items()}
        if self.config.api_key is not None:
            headers["authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        return headers

    def speaks(self, wire_format: str) -> bool:
        return wire_format == "openai.responses" and self.config.responses_api

    def _payload(self, call: UpstreamCall, *, stream: bool) -> dict[str, Any]:
        if call.native:
            return call.body | {"model": call.upstream_model, "stream": stream}
        if call.endpoint == "embeddings":  # no stream parameter there
            return call.body | {"model": call.upstream_model}
        body = call.body | {"model": call.upstream_model, "stream": stream}
        if stream and self._adds_usage(call):
            body["stream_options"] = {
                **(call.body.get("stream_options") or {}),
                "include_usage": True,
            }
        return body

    def _adds_usage(self, call: UpstreamCall) -> bool:
        """Whether the gateway asks for stream usage the client did not ask for."""
        options = call.body.get("stream_options")
        asked = isinstance(options, dict) and bool(options.get("include_usage"))
        return self.config.stream_usage and not asked

    async def complete(self, call: UpstreamCall) -> Completion:
        if call.native:
            payload = self._payload(call, stream=False)
            body, data = await self.send_json(RESPONSES_PATH, payload, call, RESPONSES_FORMAT)
            usage = self.read_usage(responses_usage, data, call.model_name)
            return Completion(body=body, usage=usage, native=True)
        path = PATHS[call.endpoint]
        payload = self._payload(call, stream=False)
        body, data = await self.send_json(path, payload, call, call.endpoint)
        return Completion(body=body, usage=self.read_usage(_usage, data, call.model_name))

    async def stream(self, call: UpstreamCall) -> ChatStream:
        stats = StreamStats()
        if call.native:
            payload = self._payload(call, stream=True)
            response = await self.open_stream(RESPONSES_PATH, payload, call)
            bad_usage = functools.partial(self.ignore_usage, call.model_name)
            chunks = relay_responses(
                response, call, stats, provider=self.name, secrets=self.secrets, bad_usage=bad_usage
            )
            return ChatStream(chunks, stats, native=True)
        path = PATHS[call.endpoint]
        response = await self.open_stream(path, self._payload(call, stream=True), call)
        return ChatStream(self._relay(response, call, stats, self._adds_usage(call)), stats)

    async def _relay(
        self,
        response: aiohttp.ClientResponse,
        call: UpstreamCall,
        stats: StreamStats,
        hide_usage: bool,
    ) -> AsyncGenerator[bytes, None]:
        """The upstream's events as they come, in the blocks they arrive in. Every event
        is parsed (orjson: about a microsecond for a chunk): one that is not a chunk
        ends the stream as a failure, as an error event does."""
        bad_usage = functools.partial(self.ignore_usage, call.model_name)
        with reading_stream(response, call, self.name) as blocks:
            async for block in blocks:
                kept, done, failure = _inspect(
                    block, stats, call, hide_usage, secrets=self.secrets, bad_usage=bad_usage
                )
                if kept:
                    yield kept  # what came before an error still reaches the client
                if failure is not None:
                    raise failure
                if done:
                    break
        if stats.finish_reason is None:  # closed cleanly, but the answer is incomplete
            raise UpstreamError(f"model '{call.model_name}' ended its stream before finishing")
        yield DONE_EVENT


def _inspect(
    block: bytes,
    stats: StreamStats,
    call: UpstreamCall,
    hide_usage: bool,
    *,
    secrets: Iterable[str] = (),
    bad_usage: Callable[[str], None] | None = None,
) -> tuple[bytes, bool, UpstreamError | None]:
    """The block's events to relay (the block itself when all of them are; a usage
    chunk the gateway asked for on its own is dropped), whether the stream has ended
    (``[DONE]``, relayed by the caller), and the failure an error event or a malformed
    one was (the events before it are relayed first)."""
    if block.startswith(b"data: {") and block.find(b"\n") == len(block) - 2:
        # The usual block of a live stream: one chunk, on one line.
        try:
            usage_only = _observe(block[6:-2], stats, call, secrets, bad_usage)
        except UpstreamError as exc:
            return b"", True, exc
        return (b"" if usage_only and hide_usage else block), False, None
    raws: list[bytes] = []
    whole = True  # every event so far is relayed as it came
    for _event, data, raw in events(block):
        if data == b"[DONE]":
            return _joined(raws), True, None
        try:
            if _observe(data, stats, call, secrets, bad_usage) and hide_usage:
                whole = False
                continue
        except UpstreamError as exc:
            return _joined(raws), True, exc
        raws.append(raw)
    return (block if whole else _joined(raws)), False, None


def _joined(raws: list[bytes]) -> bytes:
    return b"".join(raw + b"\n\n" for raw in raws)


_ERRORS = (dict, str)  # an error event's "error": an object, or vLLM's bare message


def _observe(
    data: bytes,
    stats: StreamStats,
    call: UpstreamCall,
    secrets: Iterable[str],
    bad_usage: Callable[[str], None] | None,
) -> bool:
    """Record usage and finish reason; raise on an error event or one that is not a
    chunk. True for a chunk that only carries usage (no choice with content or a
    finish reason)."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _malformed(call, "data that is not JSON") from None
    if type(chunk) is not dict:
        raise _malformed(call, "data that is not a JSON object")
    if isinstance(chunk.get("error"), _ERRORS):
        message = scrub(upstream_error_message(data), secrets)
        raise UpstreamError(f"model '{call.model_name}' failed mid-stream: {message}")
    carries = False
    choices = chunk.get("choices")
    if choices is not None:
        if type(choices) is not list:
            raise _malformed(call, "choices that are not a list")
        for choice in choices:
            if type(choice) is not dict:
                raise _malformed(call, "a choice that is not an object")
            if choice.get("finish_reason"):
                stats.finish_reason = str(choice["finish_reason"])
                carries = True
            elif choice.get("delta") or choice.get("text") or choice.get("logprobs"):
                carries = True
    if chunk.get("usage") is None:
        return False
    try:
        stats.usage = _usage(chunk)
    except MalformedUsage as exc:
        if bad_usage is not None:
            bad_usage(str(exc))
    # Some servers send the usage chunk with an empty choice ({"index":0,"delta":{}}):
    # still nothing the client asked for.
    return not carries


def _malformed(call: UpstreamCall, what: str) -> UpstreamError:
    return UpstreamError(f"model '{call.model_name}' sent a stream event with {what}")
