"""One request's attempts: retries of a model, then fallback to the next candidate.

The order is the selector's (the plan's candidates, best first); a model that fails
brings its own ``fallbacks:`` in right after it. Models whose breaker is open or whose
own rate limit is spent are skipped, and bring their fallbacks in the same way. Every
attempt counts against the request's budget (``max_attempts``, and ``deadline`` if set);
a request of several calls shares one budget over them all (``AttemptBudget``).

When nothing answers:
- one model was involved and it failed: its own error (502, 504, ...), as without
  fallback;
- several were: 503 ``all_candidates_failed`` naming each one's failure;
- none could be tried: 503 ``no_healthy_candidate`` (breakers open) with ``Retry-After``,
  or the model limit's 429.

A model that refuses the prompt as too long for its context window (``overflow``) is
not the client's final answer while a candidate with a larger window is left: that one
is tried next; when none is, the client hears ``overflow.error()`` (400).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from router_proxy.errors import (
    GatewayError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamTimeoutError,
)
from router_proxy.resilience.attempt_budget import AttemptBudget
from router_proxy.resilience.config import RetryConfig
from router_proxy.resilience.feedback import UpstreamFeedback
from router_proxy.resilience.overflow import Overflow, is_context_overflow
from router_proxy.resilience.rate_limits import RateLimits
from router_proxy.resilience.retry import Verdict, backoff, retry_after_seconds

if TYPE_CHECKING:
    from router_proxy.config.schema import ModelConfig

T = TypeVar("T")
# attempt(model, seconds left in the request's deadline or None) -> the answer
Attempt = Callable[[str, float | None], Awaitable[T]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class AttemptLog:
    """What happened, for headers, logs and metrics; filled in as it goes."""

    tried: list[tuple[str, str | None]] = field(default_factory=list)  # (model, error code)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (model, why)
    model: str | None = None  # the one that answered

    @property
    def attempts(self) -> int:
        return len(self.tried)


@dataclass
class Outcome(Generic[T]):
    result: T
    model: str
    started: float  # time.perf_counter() when the answering attempt began
    seconds: float  # that attempt's time until its answer started (a stream's first event)


class Dispatcher:
    def __init__(
        self,
        retries: RetryConfig,
        feedback: UpstreamFeedback,
        limits: RateLimits,
        models: Mapping[str, ModelConfig],
        *,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.retries = retries
        self.feedback = feedback
        self.breakers = feedback.breakers
        self.limits = limits
        self.models = models
        self.rng = rng or random.Random()
        self.sleep = sleep

    async def run(
        self,
        candidates: tuple[str, ...],
        attempt: Attempt[T],
        log: AttemptLog,
        overflow: Overflow | None = None,
        permitted: Callable[[str], bool] | None = None,
        deadline: float | None = None,
        budget: AttemptBudget | None = None,
    ) -> Outcome[T]:
        """``permitted``: the models the request may reach at all (a caller's
        preferences); a model's ``fallbacks`` outside it are passed over. ``deadline``
        (``time.monotonic()``) and ``budget``: the request's, when it makes several
        calls; else ``retries.deadline`` from now, and ``max_attempts`` for this call."""
        if deadline is None:
            deadline = self.request_deadline()
        queue, seen = list(candidates), set[str]()
        errors: list[tuple[str, GatewayError]] = []
        refused: RateLimitError | None = None
        most = self.retries.max_attempts
        while queue and (log.attempts < most if budget is None else budget.allows(log.attempts)):
            model = queue.pop(0)
            if model in seen or (permitted is not None and not permitted(model)):
                continue
            seen.add(model)
            if deadline is not None and time.monotonic() >= deadline:
                errors.append((model, _deadline_error()))
                break
            # An open breaker is looked at first, so a skipped model spends no request
            # of its rate limit; ``allows`` then claims the half-open probe, if it is one.
            # A model passed over brings its own fallbacks in, as a failed one does: a
            # model asked for by name must not answer 503 while its fallback is healthy.
            if not self.breakers.available(model):
                queue[0:0] = self._passed_over(model, "breaker_open", log)
                continue
            if self.limits.enabled:
                try:
                    await self.limits.admit_model(model)
                except RateLimitError as exc:
                    queue[0:0] = self._passed_over(model, "rate_limited", log)
                    refused = refused or exc
                    continue
            if not self.breakers.allows(model):  # another request took the probe meanwhile
                queue[0:0] = self._passed_over(model, "breaker_open", log)
                continue
            if budget is not None and not budget.take(log.attempts):
                self.feedback.abandoned(model)  # the pool ran dry meanwhile: no call
                break
            try:
                outcome = await self._try_model(model, attempt, log, deadline, budget)
            except _Failed as failed:
                errors.append((model, failed.error))
                queue[0:0] = self.models[model].fallbacks
                continue
            except GatewayError as exc:  # the client's: final, unless only too long here
                if overflow is None or not is_context_overflow(exc):
                    raise
                errors.append((model, exc))
                queue = overflow.after(model, queue, log.skipped)
                continue
            log.model = model
            return outcome
        if overflow is not None and _only_too_long(errors, log):
            raise overflow.error()
        raise self._exhausted(errors, refused, log)

    def _passed_over(self, model: str, why: str, log: AttemptLog) -> list[str]:
        log.skipped.append((model, why))
        return self.models[model].fallbacks

    def request_deadline(self) -> float | None:
        """When a request starting now must have its answer (``retries.deadline``)."""
        limit = self.retries.deadline
        return time.monotonic() + limit if limit is not None else None

    async def _try_model(
        self,
        model: str,
        attempt: Attempt[T],
        log: AttemptLog,
        deadline: float | None,
        budget: AttemptBudget | None,
    ) -> Outcome[T]:
        """Up to ``attempts_per_model`` tries; _Failed when this model is done for."""
        for retry in range(self.retries.attempts_per_model):
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            started = time.perf_counter()
            try:
                result = await attempt(model, left)
            except GatewayError as exc:
                log.tried.append((model, exc.code or "error"))
                verdict = self.feedback.failed(model, exc)
                if verdict is Verdict.FINAL:  # the client's mistake: answer it now
                    raise
                wait = self._wait_before_retry(exc, verdict, retry, model, log, deadline, budget)
                if wait is None:
                    raise _Failed(exc) from exc
                await self.sleep(wait)
                continue
            except BaseException:  # cancelled (the client left) or a bug: no verdict
                self.feedback.abandoned(model)
                raise
            seconds = time.perf_counter() - started
            log.tried.append((model, None))
            self.feedback.succeeded(model, seconds)
            return Outcome(result, model, started, seconds)
        raise AssertionError("unreachable: the last try raises or returns")

    def _wait_before_retry(
        self,
        exc: GatewayError,
        verdict: Verdict,
        retry: int,
        model: str,
        log: AttemptLog,
        deadline: float | None,
        budget: AttemptBudget | None,
    ) -> float | None:
        """Seconds to wait before trying ``model`` again, or None to move on. (A
        request's shared budget is drawn on last: only for a retry that will be made.)"""
        config = self.retries
        if verdict is not Verdict.RETRY or retry + 1 >= config.attempts_per_model:
            return None
        if budget is None and log.attempts >= config.max_attempts:
            return None
        if not self.breakers.available(model):
            return None
        asked = retry_after_seconds(exc)
        if asked is not None and asked > config.max_retry_after:
            return None  # it will not answer soon: the next candidate may
        wait = backoff(retry, config, asked, self.rng)
        if deadline is not None and time.monotonic() + wait >= deadline:
            return None
        if budget is not None and not budget.take(log.attempts):
            return None
        return wait

    def _exhausted(
        self,
        errors: list[tuple[str, GatewayError]],
        refused: RateLimitError | None,
        log: AttemptLog,
    ) -> GatewayError:
        involved = {m for m, _ in errors} | {m for m, _ in log.skipped}
        if errors and len(involved) == 1:
            return errors[-1][1]
        if (
            not errors
            and refused is not None
            and all(why == "rate_limited" for _, why in log.skipped)
        ):
            return refused
        open_models = [m for m, why in log.skipped if why == "breaker_open"]
        headers = _retry_headers(self.breakers.retry_after(open_models))
        if not errors:
            return ServiceUnavailableError(
                "No healthy candidate: "
                + ", ".join(f"'{m}' ({why.replace('_', ' ')})" for m, why in log.skipped),
                code="no_healthy_candidate",
                headers=headers,
            )
        failures = "; ".join(f"'{m}': {e.message}" for m, e in errors)
        skipped = "".join(f"; '{m}': skipped ({why})" for m, why in log.skipped)
        return ServiceUnavailableError(
            f"Every candidate failed: {failures}{skipped}",
            code="all_candidates_failed",
            headers=headers,
        )


def _only_too_long(errors: list[tuple[str, GatewayError]], log: AttemptLog) -> bool:
    """Every candidate was too small for the prompt (said so, or skipped for it), and
    more than one was: the gateway's own error names the largest window."""
    if not errors or not all(is_context_overflow(e) for _, e in errors):
        return False
    if not all(why == "context" for _, why in log.skipped):
        return False
    return len({m for m, _ in errors} | {m for m, _ in log.skipped}) > 1


class _Failed(Exception):
    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


# A client retry sooner than this cannot help while a breaker stays open.
CLIENT_RETRY_HELPS_WITHIN = 2.0


def _retry_headers(wait: float) -> dict[str, str]:
    """``Retry-After`` says truthfully when a breaker takes a probe again; when that is
    far off, ``x-should-retry: false`` tells the OpenAI and Anthropic SDKs not to sleep
    through it (they honour Retry-After up to a minute, and retry twice by default)."""
    headers = {"retry-after": str(max(1, math.ceil(wait)))}
    if wait > CLIENT_RETRY_HELPS_WITHIN:
        headers["x-should-retry"] = "false"
    return headers


def _deadline_error() -> GatewayError:
    return UpstreamTimeoutError("the request's deadline passed before an answer")
