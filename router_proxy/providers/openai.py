"""Any OpenAI-compatible server: OpenAI, vLLM, Ollama, llama.cpp, LM Studio, OpenRouter.

The client's JSON goes upstream as sent, with only ``model`` replaced, so parameters the
gateway does not know pass through untouched; replies come back byte for byte.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Literal

import httpx
import orjson
from pydantic import Field, SecretStr

from router_proxy.config.base import ProviderConfigBase
from router_proxy.errors import UpstreamError
from router_proxy.protocol import Usage
from router_proxy.providers.base import ChatStream, Completion, Provider, StreamStats, UpstreamCall
from router_proxy.providers.http import (
    DONE_EVENT,
    call_timeout,
    iter_sse,
    pooled_client,
    status_error,
    translate_errors,
)


class OpenAIProviderConfig(ProviderConfigBase):
    type: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://", description="e.g. http://vllm:8000/v1")
    api_key: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra headers sent upstream (treated as secrets)"
    )


def _usage(data: Any) -> Usage | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


class OpenAIProvider(Provider):
    config_model = OpenAIProviderConfig
    config: OpenAIProviderConfig

    def __init__(self, name: str, config: ProviderConfigBase) -> None:
        super().__init__(name, config)
        self._client: httpx.AsyncClient | None = None
        self._secrets = [s.get_secret_value() for s in self.config.headers.values()]
        if self.config.api_key is not None:
            self._secrets.append(self.config.api_key.get_secret_value())

    async def start(self) -> None:
        headers = {k: v.get_secret_value() for k, v in self.config.headers.items()}
        if self.config.api_key is not None:
            headers["authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        self._client = pooled_client(
            base_url=self.config.base_url.rstrip("/") + "/",
            headers=headers,
            max_connections=self.config.max_connections,
            connect_timeout=self.config.connect_timeout,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(f"provider '{self.name}' used before start()")
        return self._client

    def _request(self, call: UpstreamCall, *, stream: bool) -> httpx.Request:
        body = dict(call.body)
        body["model"] = call.upstream_model
        body["stream"] = stream
        return self.client.build_request(
            "POST",
            "chat/completions",
            content=orjson.dumps(body),
            headers={"content-type": "application/json", "x-request-id": call.request_id},
            timeout=call_timeout(call.timeout, self.config.connect_timeout),
        )

    async def complete(self, call: UpstreamCall) -> Completion:
        with translate_errors(self.name, call.model_name):
            response = await self.client.send(self._request(call, stream=False))
            body = response.content
        if response.status_code >= 400:
            raise status_error(response, body, model=call.model_name, secrets=self._secrets)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"model '{call.model_name}' returned a non-JSON reply") from exc
        return Completion(body=body, usage=_usage(data))

    async def stream(self, call: UpstreamCall) -> ChatStream:
        with translate_errors(self.name, call.model_name):
            response = await self.client.send(self._request(call, stream=True), stream=True)
            if response.status_code >= 400:
                body = await response.aread()
                await response.aclose()
                raise status_error(response, body, model=call.model_name, secrets=self._secrets)
        stats = StreamStats()
        return ChatStream(self._relay(response, call, stats), stats)

    async def _relay(
        self, response: httpx.Response, call: UpstreamCall, stats: StreamStats
    ) -> AsyncGenerator[bytes, None]:
        try:
            with translate_errors(self.name, call.model_name):
                async for _event, data in iter_sse(response.aiter_lines()):
                    if data == "[DONE]":
                        break
                    # Only chunks that can carry usage or a finish reason are parsed.
                    if '"usage"' in data or '"finish_reason":"' in data.replace(" ", ""):
                        self._observe(data, stats)
                    yield b"data: " + data.encode() + b"\n\n"
            yield DONE_EVENT
        finally:
            await response.aclose()

    @staticmethod
    def _observe(data: str, stats: StreamStats) -> None:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        usage = _usage(chunk)
        if usage is not None:
            stats.usage = usage
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                stats.finish_reason = str(choice["finish_reason"])
