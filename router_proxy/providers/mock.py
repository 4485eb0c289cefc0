"""A deterministic local model for demos and tests: no network, no keys.

The reply is a template over the last user message, so the same request always gets the
same answer, and tokens are estimated the same way every time. Like a model, it honours
``n``, cuts at ``max_tokens`` (finish_reason "length"), calls a tool when ``tool_choice``
requires one, and answers JSON for ``response_format`` (mock_content.py builds these).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any, Literal

import orjson
from pydantic import Field

from router_proxy.config.base import ProviderConfigBase
from router_proxy.context import RequestContext
from router_proxy.protocol import ChatCompletionRequest, Usage
from router_proxy.providers.base import ChatStream, Completion, Provider, StreamStats, UpstreamCall
from router_proxy.providers.mock_content import MAX_N, Reply, compose, estimate_tokens
from router_proxy.providers.mock_endpoints import as_chat, embeddings, text_choice
from router_proxy.translate.common import DONE_EVENT, sse_event


class MockProviderConfig(ProviderConfigBase):
    type: Literal["mock"]
    reply: str = Field(
        default="[{model}] You said: {prompt}",
        description="reply template; {model} and {prompt} (last user message) are filled in",
    )
    latency_ms: float = Field(default=0.0, ge=0, description="simulated time to answer")


class MockProvider(Provider):
    config_model = MockProviderConfig
    config: MockProviderConfig
    endpoints = frozenset({"chat", "completions", "embeddings"})
    logprobs = False

    def _answer(self, call: UpstreamCall) -> tuple[Reply, int, Usage]:
        """One choice's reply (every choice gets the same: the mock is deterministic), the
        number of choices, and the usage of them all."""
        body = call.body if call.endpoint == "chat" else as_chat(call)
        request = ChatCompletionRequest.model_validate(body)
        ctx = RequestContext(request, body, call.request_id)
        prompt = ctx.text("last_user")
        text = self.config.reply.format(model=call.upstream_model, prompt=prompt[:500])
        reply = compose(request, body, call.upstream_model, prompt[:500], text)
        n = min(request.n or 1, MAX_N)
        usage = Usage(
            prompt_tokens=estimate_tokens(ctx.text("all")), completion_tokens=n * reply.tokens
        )
        return reply, n, usage

    def _envelope(self, call: UpstreamCall, kind: str) -> dict[str, Any]:
        return {
            "id": f"{'cmpl' if kind == 'text_completion' else 'chatcmpl'}-mock-{call.request_id}",
            "object": kind,
            "created": int(time.time()),
            "model": call.upstream_model,
        }

    async def _delay(self) -> None:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)

    async def complete(self, call: UpstreamCall) -> Completion:
        await self._delay()
        if call.endpoint == "embeddings":
            payload, usage = embeddings(call)
            return Completion(body=orjson.dumps(payload), usage=usage)
        reply, n, usage = self._answer(call)
        if call.endpoint == "completions":
            text = [text_choice(i, reply.content or "", reply.finish_reason) for i in range(n)]
            kind, choices = "text_completion", text
        else:
            kind, choices = (
                "chat.completion",
                [
                    {
                        "index": i,
                        "message": _message(reply, call, i),
                        "finish_reason": reply.finish_reason,
                    }
                    for i in range(n)
                ],
            )
        payload = self._envelope(call, kind) | {
            "choices": choices,
            "usage": usage.model_dump() | {"total_tokens": usage.total_tokens},
        }
        return Completion(body=orjson.dumps(payload), usage=usage)

    async def stream(self, call: UpstreamCall) -> ChatStream:
        await self._delay()
        reply, n, usage = self._answer(call)
        stats = StreamStats()
        return ChatStream(self._chunks(call, reply, n, usage, stats), stats)

    async def _chunks(
        self, call: UpstreamCall, reply: Reply, n: int, usage: Usage, stats: StreamStats
    ) -> AsyncGenerator[bytes, None]:
        text = call.endpoint == "completions"
        base = self._envelope(call, "text_completion" if text else "chat.completion.chunk")
        for index in range(n):  # one choice after the other; each chunk names its choice
            for delta in _deltas(reply, call, index):
                if text:
                    choice = text_choice(index, delta.get("content") or "", None)
                else:
                    choice = {"index": index, "delta": delta, "finish_reason": None}
                yield sse_event(base | {"choices": [choice]})
            if text:
                finish = text_choice(index, "", reply.finish_reason)
            else:
                finish = {"index": index, "delta": {}, "finish_reason": reply.finish_reason}
            yield sse_event(base | {"choices": [finish]})
        stats.usage, stats.finish_reason = usage, reply.finish_reason
        if (call.body.get("stream_options") or {}).get("include_usage"):
            yield sse_event(
                base
                | {
                    "choices": [],
                    "usage": usage.model_dump() | {"total_tokens": usage.total_tokens},
                }
            )
        yield DONE_EVENT


def _call_id(call: UpstreamCall, index: int) -> str:
    return f"call_mock_{call.request_id}_{index}"


def _message(reply: Reply, call: UpstreamCall, index: int) -> dict[str, Any]:
    if reply.tool is None:
        return {"role": "assistant", "content": reply.content}
    function = {"name": reply.tool, "arguments": reply.arguments}
    tool_call = {"id": _call_id(call, index), "type": "function", "function": function}
    return {"role": "assistant", "content": None, "tool_calls": [tool_call]}


def _deltas(reply: Reply, call: UpstreamCall, index: int) -> Iterator[dict[str, Any]]:
    """A choice's deltas in OpenAI's shape: the role, then text word by word, or the tool
    call's id and name, then its arguments in pieces (as the SDK's stream helpers expect)."""
    if reply.tool is None:
        yield {"role": "assistant", "content": ""}
        words = (reply.content or "").split(" ")
        for i, word in enumerate(words):
            yield {"content": word if i == 0 else " " + word}
        return
    function = {"name": reply.tool, "arguments": ""}
    head = {"index": 0, "id": _call_id(call, index), "type": "function", "function": function}
    yield {"role": "assistant", "content": None, "tool_calls": [head]}
    for start in range(0, len(reply.arguments), 16):
        piece = reply.arguments[start : start + 16]
        yield {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
