"""One model call of a multi-call plan, made through the dispatcher like any request's
call (retries, the model's ``fallbacks``, breakers and model limits apply), with what
the stop rules read from its answer: the text and the mean token log-probability.

The request's calls share its deadline and its retry budget (``AttemptBudget``: each
call's first attempt, then ``max_attempts - 1`` more among them all), and, when its
conversation asks for it (``turn.py``), each call's models are judged against their
context windows and each model gets the history made valid for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from router_proxy.engine import traced
from router_proxy.engine.multi_call.fit import PassedOver
from router_proxy.engine.record import RequestRecord
from router_proxy.engine.upstream import Outgoing, Upstream
from router_proxy.errors import GatewayError
from router_proxy.protocol import Usage
from router_proxy.providers.base import ChatStream, Completion
from router_proxy.resilience.attempt_budget import AttemptBudget
from router_proxy.resilience.dispatch import AttemptLog, Dispatcher, Outcome

if TYPE_CHECKING:
    from router_proxy.engine.multi_call.turn import CallsTurn

Price = Callable[[str | None, Usage | None], float | None]
PASSED_OVER = "context"  # a call's reason when no model of it could take the prompt
# What a call's text is (the records keep it: docs/records.md): the model's own answer to
# the client's question; an answer written from other answers (a refiner's, asked the
# gateway's own prompt); a verifier's verdict on another call's answer.
ANSWER, REFINED, VERDICT = "answer", "refined", "verdict"


@dataclass(eq=False, slots=True)
class Call:
    """One call: the model asked (or the fallback that answered), its stage (0-based),
    what its text is (``role``), and why the plan went on past it (``reason``, set by
    the stop rule)."""

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
    role: str = ANSWER  # ANSWER | REFINED | VERDICT
    called: bool = True  # False: passed over, no model of it could take the prompt
    streamed: bool = False  # its answer went to the client live: no text of it is held

    @property
    def judges(self) -> bool:
        """A verifier's call: its text is a verdict, not an answer."""
        return self.role == VERDICT

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
        *,
        deadline: float | None = None,
        budget: AttemptBudget | None = None,
        turn: CallsTurn | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.upstream = upstream
        self.price = price
        self.record = record
        self.permitted = permitted
        self.deadline = deadline  # the request's (time.monotonic()), for every call
        self.budget = budget  # the request's extra attempts, shared by its calls
        self.turn = turn  # None: no window declared and no session (nothing to do)

    async def complete(
        self,
        models: tuple[str, ...],
        out: Outgoing,
        stage: int,
        *,
        answers: bool = False,
        prompt: str | None = None,
    ) -> Call:
        """``models[0]``'s whole answer (the rest, then its ``fallbacks``, if it fails);
        a failure is a Call with its ``error``, never raised. ``answers``: the call
        writes the answer on its own (a last stage, a refiner); ``prompt``: the gateway's
        own that ``out`` asks (a verifier's, a refiner's), else ``out`` is the client's."""
        upstream, request_id = self.upstream, self.record.request_id
        send = self._sender(out, prompt)

        async def attempt(model: str, left: float | None) -> Completion:
            return await upstream.complete(send(model), model, left, request_id)

        role = role_of(prompt)
        started = time.perf_counter()
        try:
            outcome = await self._run(models, attempt, answers, prompt)
        except PassedOver as over:
            return Call(
                models[0], stage, error=over.error, reason=PASSED_OVER, role=role, called=False
            )
        except GatewayError as exc:
            return Call(models[0], stage, time.perf_counter() - started, error=exc, role=role)
        call = self._read(outcome.model, stage, outcome.result, time.perf_counter() - started)
        call.role = role
        return call

    async def open_stream(
        self, models: tuple[str, ...], out: Outgoing, prompt: str | None = None
    ) -> Outcome[tuple[ChatStream, bytes, float]]:
        """The answer as a live stream (the last stage's, a refiner's: nothing judges
        it); raises as a single model's stream would, or ``PassedOver``."""
        upstream, request_id = self.upstream, self.record.request_id
        send = self._sender(out, prompt)

        async def attempt(model: str, left: float | None) -> tuple[ChatStream, bytes, float]:
            return await upstream.open_stream(send(model), model, left, request_id)

        return await self._run(models, attempt, True, prompt)

    def _sender(self, out: Outgoing, prompt: str | None) -> Callable[[str], Outgoing]:
        """What each model is sent: the client's history made valid for a model that did
        not write it (a prompt of the gateway's own has no history)."""
        if self.turn is None or prompt is not None:
            return lambda model: out
        return partial(self.turn.turn.outgoing, out)

    async def _run(
        self, models: tuple[str, ...], attempt: Any, answers: bool, prompt: str | None
    ) -> Outcome[Any]:
        log, overflow = AttemptLog(), None
        try:
            if self.turn is not None:
                models, overflow = self.turn.models(models, log.skipped, answers, prompt)
            if self.record.trace is not None:  # a span per attempt, as for a single call
                attempt = traced.attempts(attempt, self.record.trace, log, self.dispatcher.models)
            outcome: Outcome[Any] = await self.dispatcher.run(
                models, attempt, log, overflow, self.permitted, self.deadline, self.budget
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


def role_of(prompt: str | None) -> str:
    """A call asked the client's question answers it; one asked the gateway's own prompt
    (a refiner's) writes from other answers (a verifier marks its calls ``VERDICT``)."""
    return ANSWER if prompt is None else REFINED


def mean_logprob(logprobs: Any) -> float | None:
    """The mean of the answer's token log-probabilities (OpenAI's ``logprobs.content``)."""
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(tokens, list) or not tokens:
        return None
    values = [t.get("logprob") for t in tokens if isinstance(t, dict)]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None
