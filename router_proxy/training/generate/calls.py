"""One model call through the policy's providers, as ``generate`` makes them: bounded
concurrency, retries of transient failures with exponential backoff, and the cost of the
call from its measured usage and the model's ``cost`` table.

Transient: the upstream unreachable or timing out, a reply that is not JSON, and statuses
408, 409, 425, 429 and 5xx (``Retry-After`` is honoured, up to the backoff cap). Anything
else (400, 401, 404, ...) fails at once: asking again would get the same answer. Offline
generation has no other model to fall back to and no client waiting, so it retries more
(500 included) and longer than the gateway's request path (resilience/retry.py).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from router_proxy.config.schema import Config
from router_proxy.errors import UpstreamError, UpstreamStatusError
from router_proxy.providers.base import Provider, UpstreamCall
from router_proxy.providers.registry import build_provider
from router_proxy.resilience.retry import retry_after_seconds

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
Messages = list[dict[str, str]]


class CallFailed(Exception):
    """A call that failed for good (after its retries, or at once when not transient)."""


@dataclass(frozen=True)
class Reply:
    text: str
    cost: float  # US$, from the measured usage (0 when the provider reported none)
    prompt_tokens: int
    completion_tokens: int
    usage_known: bool


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # calls in all, the first included
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    cap: float = 30.0  # longest wait

    def delay(self, retry: int, error: UpstreamError) -> float:
        wait = min(self.cap, self.backoff * 2.0**retry) * random.uniform(0.5, 1.0)
        after = retry_after_seconds(error)
        if after is not None:
            wait = max(wait, min(after, self.cap))
        return float(wait)


def is_transient(error: UpstreamError) -> bool:
    if isinstance(error, UpstreamStatusError):
        status = error.upstream_status
        return status in TRANSIENT_STATUSES or status >= 500
    return True  # unreachable, timed out, or a garbled reply


def reply_text(body: bytes) -> str:
    """The assistant's text in an OpenAI chat.completion body ('' when it has none)."""
    data: Any = orjson.loads(body)
    choices = data.get("choices") if isinstance(data, dict) else None
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return content if isinstance(content, str) else ""


class ModelPool:
    """The policy's models, called through their providers (opened by ``async with``)."""

    def __init__(
        self, config: Config, models: Sequence[str], concurrency: int, retry: RetryPolicy
    ) -> None:
        unknown = [m for m in models if m not in config.models]
        if unknown:
            known = ", ".join(sorted(config.models))
            raise ValueError(f"model(s) {unknown} are not in the policy (its models: {known})")
        self.config = config
        self.retry = retry
        self.retries = 0  # transient failures retried so far
        self._limit = asyncio.Semaphore(concurrency)
        names = {config.models[m].provider for m in models}
        self.providers: dict[str, Provider] = {
            name: build_provider(name, config.providers[name]) for name in sorted(names)
        }

    async def __aenter__(self) -> ModelPool:
        for provider in self.providers.values():
            await provider.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for provider in self.providers.values():
            await provider.aclose()

    async def complete(
        self, model: str, messages: Messages, *, temperature: float, max_tokens: int, tag: str
    ) -> Reply:
        """One chat completion; ``tag`` names the call in upstream logs (x-request-id)."""
        settings = self.config.models[model]
        call = UpstreamCall(
            model_name=model,
            upstream_model=self.config.upstream_name(model),
            body={
                "model": model,
                "messages": messages,
                "temperature": temperature,
                "max_tokens": max_tokens,
            },
            timeouts=settings.timeouts,
            request_id=tag,
        )
        provider = self.providers[settings.provider]
        retry = 0
        while True:
            try:
                async with self._limit:
                    completion = await provider.complete(call)
                text = reply_text(completion.body)
            except (UpstreamError, orjson.JSONDecodeError) as exc:
                error = exc if isinstance(exc, UpstreamError) else UpstreamError(str(exc))
                if not is_transient(error) or retry + 1 >= self.retry.attempts:
                    raise CallFailed(error.message) from exc
                self.retries += 1
                await asyncio.sleep(self.retry.delay(retry, error))
                retry += 1
                continue
            usage = completion.usage
            if usage is None:
                return Reply(text, 0.0, 0, 0, usage_known=False)
            cost = settings.cost.dollars(usage.prompt_tokens, usage.completion_tokens)
            return Reply(text, cost, usage.prompt_tokens, usage.completion_tokens, True)
