"""One model call of a multi-call plan, made through the dispatcher like any request's
call (retries, the model's ``fallbacks``, breakers and model limits apply), with what
the stop rules read from its answer: the text and the mean token log-probability."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from router_proxy.engine import traced
from router_proxy.engine.record import RequestRecord
from router_proxy.engine.upstream import Outgoing, Upstream
from router_proxy.errors import GatewayError
from router_proxy.protocol import Usage
from router_proxy.providers.base import ChatStream, Completion
from router_proxy.resilience.dispatch import AttemptLog, Dispatcher, Outcome

Price = Callable[[str | None, Usage | None], float | None]


@dataclass(eq=False, slots=True)
class Call:
    """One call: the model asked (or the fallback that answered), its stage (0-based),
    and why the plan went on past it (``reason``, set by the stop rule)."""

    model: str
    stage: int
    seconds: float = 0.0
    body: dict[str, Any] | None = None  # the chat.completion, when it answered whole
    text: str | None = None
    mean_logprob: float | None = None
    usage: Usage | None = None
    cost: float | None = None
    error: GatewayError | None = None
    reason: str = "called"
    judges: bool = False  # a verifier's call: its text is a verdict, not an answer

    @property
    def answered(self) -> bool:
        """It answered the client's question with text (what rules and votes compare)."""
        return self.text is not None and self.body is not None and not self.judges

    @property
    def returnable(self) -> bool:
        """Its completion can go to the client as it is (text, tool calls or both)."""
        return self.body is not None and not self.judges


def whole_body(out: Outgoing, *, logprobs: bool = False) -> Outgoing:
    """``out`` asking for a whole answer (stages are compared before anything is sent),
    and for token log-probabilities when a confidence rule reads them."""
    body = {k: v for k, v in out.body.items() if k not in ("stream", "stream_options")}
    if logprobs:
        body["logprobs"] = True
    return replace(out, body=body, native_body=None)


def asking(out: Outgoing, prompt: str) -> Outgoing:
    """A request of the gateway's own (a verifier's or refiner's): one user message."""
    body = {
        "model": out.body.get("model", "auto"),
        "messages": [{"role": "user", "content": prompt}],
    }
    return Outgoing(body)


class Caller:
    """Makes one request's calls; every attempt lands in the request's attempt log."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        upstream: Upstream,
        price: Price,
        record: RequestRecord,
        permitted: Callable[[str], bool] | None,
        deadline: float | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.upstream = upstream
        self.price = price
        self.record = record
        self.permitted = permitted
        self.deadline = deadline  # the request's (time.monotonic()), for every call

    async def complete(self, models: tuple[str, ...], out: Outgoing, stage: int) -> Call:
        """``models[0]``'s whole answer (the rest, then its ``fallbacks``, if it fails);
        a failure is a Call with its ``error``, never raised."""
        upstream, request_id = self.upstream, self.record.request_id

        async def attempt(model: str, left: float | None) -> Completion:
            return await upstream.complete(out, model, left, request_id)

        started = time.perf_counter()
        try:
            outcome = await self._run(models, attempt)
        except GatewayError as exc:
            return Call(models[0], stage, time.perf_counter() - started, error=exc)
        return self._read(outcome.model, stage, outcome.result, time.perf_counter() - started)

    async def open_stream(
        self, models: tuple[str, ...], out: Outgoing
    ) -> Outcome[tuple[ChatStream, bytes, float]]:
        """The answer as a live stream (the last stage's: nothing judges it); raises as
        a single model's stream would."""
        upstream, request_id = self.upstream, self.record.request_id

        async def attempt(model: str, left: float | None) -> tuple[ChatStream, bytes, float]:
            return await upstream.open_stream(out, model, left, request_id)

        return await self._run(models, attempt)

    async def _run(self, models: tuple[str, ...], attempt: Any) -> Outcome[Any]:
        log = AttemptLog()
        if self.record.trace is not None:  # a span per attempt, as for a single call
            attempt = traced.attempts(attempt, self.record.trace, log, self.dispatcher.models)
        try:
            outcome: Outcome[Any] = await self.dispatcher.run(
                models, attempt, log, None, self.permitted, self.deadline
            )
        finally:
            shared = self.record.attempts
            shared.tried += log.tried
            shared.skipped += log.skipped
        return outcome

    def _read(self, model: str, stage: int, completion: Completion, seconds: float) -> Call:
        call = Call(model, stage, seconds, usage=completion.usage)
        call.cost = self.price(model, completion.usage)
        try:
            body = orjson.loads(completion.body)
            choice = body["choices"][0]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            return call  # no answer to compare: it backs nothing
        call.body = body
        content = (choice.get("message") or {}).get("content")
        call.text = content if isinstance(content, str) else None
        call.mean_logprob = mean_logprob(choice.get("logprobs"))
        return call


def mean_logprob(logprobs: Any) -> float | None:
    """The mean of the answer's token log-probabilities (OpenAI's ``logprobs.content``)."""
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(tokens, list) or not tokens:
        return None
    values = [t.get("logprob") for t in tokens if isinstance(t, dict)]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None
