"""A deterministic local model for demos and tests: no network, no keys.

The reply is a template over the last user message, so the same request always gets the
same answer, and tokens are estimated the same way every time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any, Literal

import orjson
from pydantic import Field

from router_proxy.config.base import ProviderConfigBase
from router_proxy.context import RequestContext
from router_proxy.protocol import ChatCompletionRequest, Usage
from router_proxy.providers.base import ChatStream, Completion, Provider, StreamStats, UpstreamCall
from router_proxy.providers.http import DONE_EVENT, sse_event


class MockProviderConfig(ProviderConfigBase):
    type: Literal["mock"]
    reply: str = Field(
        default="[{model}] You said: {prompt}",
        description="reply template; {model} and {prompt} (last user message) are filled in",
    )
    latency_ms: float = Field(default=0.0, ge=0, description="simulated time to answer")


def estimate_tokens(text: str) -> int:
    # About four characters a token for English text; deterministic, good enough for a mock.
    return max(1, (len(text) + 3) // 4) if text else 0


class MockProvider(Provider):
    config_model = MockProviderConfig
    config: MockProviderConfig

    def _answer(self, call: UpstreamCall) -> tuple[str, Usage]:
        request = ChatCompletionRequest.model_validate(call.body)
        ctx = RequestContext(request, call.body, call.request_id)
        prompt = ctx.text("last_user")
        text = self.config.reply.format(model=call.upstream_model, prompt=prompt[:500])
        limit = request.max_completion_tokens or request.max_tokens
        if limit is not None:
            text = text[: limit * 4]
        usage = Usage(
            prompt_tokens=estimate_tokens(ctx.text("all")), completion_tokens=estimate_tokens(text)
        )
        return text, usage

    def _envelope(self, call: UpstreamCall, kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-mock-{call.request_id}",
            "object": kind,
            "created": int(time.time()),
            "model": call.upstream_model,
        }

    async def _delay(self) -> None:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)

    async def complete(self, call: UpstreamCall) -> Completion:
        await self._delay()
        text, usage = self._answer(call)
        payload = self._envelope(call, "chat.completion") | {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage.model_dump() | {"total_tokens": usage.total_tokens},
        }
        return Completion(body=orjson.dumps(payload), usage=usage)

    async def stream(self, call: UpstreamCall) -> ChatStream:
        await self._delay()
        text, usage = self._answer(call)
        stats = StreamStats()
        return ChatStream(self._chunks(call, text, usage, stats), stats)

    async def _chunks(
        self, call: UpstreamCall, text: str, usage: Usage, stats: StreamStats
    ) -> AsyncGenerator[bytes, None]:
        base = self._envelope(call, "chat.completion.chunk")
        yield sse_event(
            base
            | {
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ]
            }
        )
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            yield sse_event(
                base
                | {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            )
        yield sse_event(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        stats.usage, stats.finish_reason = usage, "stop"
        if (call.body.get("stream_options") or {}).get("include_usage"):
            yield sse_event(
                base
                | {
                    "choices": [],
                    "usage": usage.model_dump() | {"total_tokens": usage.total_tokens},
                }
            )
        yield DONE_EVENT
