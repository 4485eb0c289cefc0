"""Anthropic's Messages API behind the OpenAI chat-completions shape.

The mapping itself is pure and lives in ``router_proxy.translate``: requests go out
through ``chat_to_anthropic.to_anthropic_request``; replies and stream events come back
through ``anthropic_to_chat`` (``to_openai_completion``, ``StreamTranslator``; the
stream's I/O is ``anthropic_stream.translate_stream``).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr

from router_proxy.config.base import ProviderConfigBase
from router_proxy.protocol import Usage
from router_proxy.providers.anthropic_stream import (
    relay_native,
    to_openai_completion,
    translate_stream,
)
from router_proxy.providers.base import ChatStream, Completion, StreamStats, UpstreamCall
from router_proxy.providers.http_provider import HTTPProvider
from router_proxy.translate.anthropic_to_chat import usage_of
from router_proxy.translate.chat_to_anthropic import to_anthropic_request

Json = dict[str, Any]
MESSAGES_PATH = "v1/messages"
MESSAGES_FORMAT = "anthropic.messages"  # the wire format a Messages client speaks


class AnthropicProviderConfig(ProviderConfigBase):
    type: Literal["anthropic"]
    base_url: str = Field(
        default="https://api.anthropic.com",
        pattern=r"^https?://",
        description="API root without /v1; requests go to {base_url}/v1/messages",
    )
    api_key: SecretStr | None = None
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(
        default=4096, ge=1, description="max_tokens when the client sets none (Anthropic needs one)"
    )


class AnthropicProvider(HTTPProvider):
    config_model = AnthropicProviderConfig
    config: AnthropicProviderConfig
    logprobs = False  # the Messages API has none

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def default_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.config.anthropic_version}
        if self.config.api_key is not None:
            headers["x-api-key"] = self.config.api_key.get_secret_value()
        return headers

    def speaks(self, wire_format: str) -> bool:
        # A Messages client's body goes as it is: thinking, cache_control and every
        # field the translation would drop or reshape stay.
        return wire_format == MESSAGES_FORMAT

    def _payload(self, call: UpstreamCall, *, stream: bool) -> Json:
        if call.native:
            return call.body | {"model": call.upstream_model, "stream": stream}
        return to_anthropic_request(
            call.body,
            model=call.upstream_model,
            default_max_tokens=self.config.default_max_tokens,
            stream=stream,
        )

    async def complete(self, call: UpstreamCall) -> Completion:
        payload = self._payload(call, stream=False)
        body, data = await self.send_json(MESSAGES_PATH, payload, call, MESSAGES_FORMAT)
        if call.native:
            usage = self.read_usage(_message_usage, data, call.model_name)
            return Completion(body=body, usage=usage, native=True)
        bad_usage = functools.partial(self.ignore_usage, call.model_name)
        chat, usage = to_openai_completion(data, call, bad_usage)
        return Completion(body=orjson.dumps(chat), usage=usage)

    async def stream(self, call: UpstreamCall) -> ChatStream:
        response = await self.open_stream(MESSAGES_PATH, self._payload(call, stream=True), call)
        stats = StreamStats()
        relay = relay_native if call.native else translate_stream
        bad_usage = functools.partial(self.ignore_usage, call.model_name)
        chunks = relay(
            response, call, stats, provider=self.name, secrets=self.secrets, bad_usage=bad_usage
        )
        return ChatStream(chunks, stats, native=call.native)


def _message_usage(message: dict[str, Any]) -> Usage | None:
    return usage_of(message.get("usage"))
