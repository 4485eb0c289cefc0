"""Any OpenAI-compatible server: OpenAI, vLLM, Ollama, llama.cpp, LM Studio, OpenRouter.

The client's JSON goes upstream as sent, with only ``model`` replaced, so parameters the
gateway does not know pass through untouched; replies come back byte for byte.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Literal

import aiohttp
import orjson
from pydantic import Field, SecretStr

from router_proxy.config.base import ProviderConfigBase
from router_proxy.errors import UpstreamError
from router_proxy.protocol import Endpoint, Usage
from router_proxy.providers.base import (
    ChatStream,
    Completion,
    StreamStats,
    UpstreamCall,
)
from router_proxy.providers.http import (
    event_blocks,
    events,
    notable,
    translate_errors,
    upstream_error_message,
)
from router_proxy.providers.http_provider import HTTPProvider, close_response
from router_proxy.providers.openai_responses import (
    RESPONSES_PATH,
    relay_responses,
    responses_usage,
)
from router_proxy.translate.common import DONE_EVENT

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


def _usage(data: Any) -> Usage | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
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
            body, data = await self.send_json(RESPONSES_PATH, payload, call)
            return Completion(body=body, usage=responses_usage(data), native=True)
        path = PATHS[call.endpoint]
        body, data = await self.send_json(path, self._payload(call, stream=False), call)
        return Completion(body=body, usage=_usage(data))

    async def stream(self, call: UpstreamCall) -> ChatStream:
        if call.native:
            payload = self._payload(call, stream=True)
            response = await self.open_stream(RESPONSES_PATH, payload, call)
            stats = StreamStats()
            chunks = relay_responses(
                response, call, stats, provider=self.name, secrets=self.secrets
            )
            return ChatStream(chunks, stats, native=True)
        path = PATHS[call.endpoint]
        response = await self.open_stream(path, self._payload(call, stream=True), call)
        stats = StreamStats()
        return ChatStream(self._relay(response, call, stats, self._adds_usage(call)), stats)

    async def _relay(
        self,
        response: aiohttp.ClientResponse,
        call: UpstreamCall,
        stats: StreamStats,
        hide_usage: bool,
    ) -> AsyncGenerator[bytes, None]:
        """The upstream's events as they come, in the blocks they arrive in: only a block
        that can carry usage, an error, a finish reason or the end marker is parsed."""
        try:
            with translate_errors(self.name, call.model_name):
                blocks = event_blocks(response.content, call.timeouts.total, call.model_name)
                async for block in blocks:
                    if not notable(block):
                        yield block
                        continue
                    kept, done, failure = _inspect(block, stats, call, hide_usage)
                    if kept:
                        yield kept  # what came before an error still reaches the client
                    if failure is not None:
                        raise failure
                    if done:
                        break
        finally:
            close_response(response)
        if stats.finish_reason is None:  # closed cleanly, but the answer is incomplete
            raise UpstreamError(f"model '{call.model_name}' ended its stream before finishing")
        yield DONE_EVENT


def _inspect(
    block: bytes, stats: StreamStats, call: UpstreamCall, hide_usage: bool
) -> tuple[bytes, bool, UpstreamError | None]:
    """The block's events to relay (a usage chunk the gateway asked for on its own is
    dropped), whether the stream has ended (``[DONE]``, relayed by the caller), and the
    error an error event carried (the events before it are relayed first)."""
    kept: list[bytes] = []
    for _event, data, raw in events(block):
        if data == "[DONE]":
            return b"".join(kept), True, None
        try:
            if _observe(data, stats, call) and hide_usage:
                continue
        except UpstreamError as exc:
            return b"".join(kept), True, exc
        kept.append(raw)
    return b"".join(kept), False, None


def _observe(data: str, stats: StreamStats, call: UpstreamCall) -> bool:
    """Record usage and finish reason; raise on an error event. True for a chunk that
    only carries usage (no choice with content or a finish reason)."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(chunk, dict):
        return False
    if isinstance(chunk.get("error"), dict | str):
        message = upstream_error_message(data.encode())
        raise UpstreamError(f"model '{call.model_name}' failed mid-stream: {message}")
    usage = _usage(chunk)
    if usage is not None:
        stats.usage = usage
    carries = False
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason"):
            stats.finish_reason = str(choice["finish_reason"])
            carries = True
        elif choice.get("delta") or choice.get("text") or choice.get("logprobs"):
            carries = True
    # Some servers send the usage chunk with an empty choice ({"index":0,"delta":{}}):
    # still nothing the client asked for.
    return usage is not None and not carries
