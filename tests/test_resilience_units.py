"""Breakers, retry rules and the dispatcher's attempt loop, on fake clocks and attempts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from router_proxy.config.load import load_config_text
from router_proxy.errors import (
    GatewayError,
    RateLimitError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from router_proxy.resilience.attempt_budget import AttemptBudget
from router_proxy.resilience.breaker import BreakerBoard, BreakerState
from router_proxy.resilience.config import BreakerConfig, LimitsConfig, RetryConfig, StateConfig
from router_proxy.resilience.dispatch import AttemptLog, Dispatcher
from router_proxy.resilience.feedback import UpstreamFeedback
from router_proxy.resilience.rate_limits import RateLimits
from router_proxy.resilience.retry import Verdict, backoff, classify, retry_after_seconds
from router_proxy.resilience.shared_state import SharedState
from tests.support.provider_helpers import anyio_backend_fixture  # noqa: F401

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(code: int, retry_after: str | None = None) -> UpstreamStatusError:
    headers = {"retry-after": retry_after} if retry_after is not None else None
    return UpstreamStatusError(f"status {code}", upstream_status=code, headers=headers)


def transport() -> UpstreamError:
    error = UpstreamError("connection refused")
    error.transport = True
    return error


# -- breaker ----------------------------------------------------------------------------


def test_breaker_opens_after_n_failures_in_the_window_and_probes_after_cooldown() -> None:
    clock = Clock()
    board = BreakerBoard(BreakerConfig(failures=3, window=10, cooldown=5), clock)
    board.record_failure("m")
    clock.now += 11  # the first failure leaves the window
    board.record_failure("m")
    board.record_failure("m")
    assert board.get("m").state() is BreakerState.CLOSED
    board.record_failure("m")
    assert board.get("m").state() is BreakerState.OPEN
    assert not board.allows("m")
    clock.now += 5
    assert board.get("m").state() is BreakerState.HALF_OPEN
    assert board.allows("m")  # the probe
    assert not board.allows("m")  # only one at a time
    board.record_success("m")
    assert board.get("m").state() is BreakerState.CLOSED
    assert board.allows("m")


def calls(board: BreakerBoard, clock: Clock, pattern: str, every: float = 0.1) -> int | None:
    """Record ``pattern``'s calls (F failed, S succeeded) ``every`` seconds apart; the
    1-based index of the call that opened the breaker, or None."""
    for i, outcome in enumerate(pattern, 1):
        clock.now += every
        if outcome == "F":
            board.record_failure("m")
        else:
            board.record_success("m")
        if board.get("m").state() is BreakerState.OPEN:
            return i
    return None


def test_a_model_failing_30_percent_of_calls_opens_though_successes_come_between() -> None:
    """Issue 19: any success used to clear the count, so intermittent failures (or 100
    alternating fail/success calls) never opened it. The default opens at 5 failures in
    30 s that are at least a quarter of the window's calls."""
    clock = Clock()
    board = BreakerBoard(BreakerConfig(), clock)
    # 3 failures in every 10 calls, never two in a row: the 5th failure (call 15) opens it.
    assert calls(board, clock, "FSSSFSSFSS" * 10) == 15
    clock = Clock()
    board = BreakerBoard(BreakerConfig(), clock)
    assert calls(board, clock, "FS" * 50) == 9  # alternating: the 5th failure opens it


def test_a_busy_model_with_rare_failures_stays_closed_and_one_that_dies_opens_at_once() -> None:
    clock = Clock()
    board = BreakerBoard(BreakerConfig(), clock)
    # 1 call in 10 failing, 1,000 calls in 10 s: 100 failures, never a quarter of the calls.
    assert calls(board, clock, "SSSSFSSSSS" * 100, every=0.01) is None
    assert board.get("m").recent() == (1000, 100)
    # It dies: 5 failures in a row open it, though 900 successes are still in the window.
    assert calls(board, clock, "F" * 10, every=0.01) == 5


def test_a_quiet_model_needs_failures_failures_and_old_calls_leave_the_window() -> None:
    clock = Clock()
    board = BreakerBoard(BreakerConfig(failures=5, window=30), clock)
    assert calls(board, clock, "FFFF", every=5) is None  # 4 of 4 failed: too little evidence
    clock.now += 32  # they leave the window (whole slices of it: 1.5 s here)
    assert board.get("m").recent() == (0, 0)
    assert calls(board, clock, "FFFF", every=1) is None
    assert calls(board, clock, "F") == 1


def test_the_rate_is_over_the_window_only_and_a_probe_success_starts_afresh() -> None:
    clock = Clock()
    config = BreakerConfig(failures=3, failure_rate=0.5, window=10, cooldown=5)
    board = BreakerBoard(config, clock)
    assert calls(board, clock, "S" * 20 + "FSFS") is None  # 2 failures in 24 calls
    assert board.get("m").recent() == (24, 2)
    clock.now += 11  # all of it leaves the window
    assert calls(board, clock, "FSFSF") == 5  # 3 failures in 5 calls
    clock.now += 5
    assert board.allows("m")  # the probe
    board.record_success("m")
    assert board.get("m").state() is BreakerState.CLOSED
    assert board.get("m").recent() == (0, 0)  # the failures before it opened are gone
    assert calls(board, clock, "FSF") is None


def test_failed_probe_reopens_for_a_new_cooldown() -> None:
    clock = Clock()
    board = BreakerBoard(BreakerConfig(failures=1, cooldown=5), clock)
    board.record_failure("m")
    clock.now += 5
    assert board.allows("m")
    board.record_failure("m")
    assert board.get("m").state() is BreakerState.OPEN
    assert board.get("m").retry_after() == pytest.approx(5)


def test_breaker_notifies_listeners_on_open_and_close_and_can_be_disabled() -> None:
    clock = Clock()
    board = BreakerBoard(BreakerConfig(failures=1, cooldown=5), clock)
    events: list[tuple[str, float]] = []
    board.listeners.append(lambda model, until: events.append((model, until)))
    board.record_failure("m")
    clock.now += 6
    assert board.allows("m")
    board.record_success("m")
    assert events == [("m", 1005.0), ("m", 0.0)]
    board.configure(BreakerConfig(enabled=False, failures=1))
    board.record_failure("m")
    assert board.allows("m")


def test_remote_open_is_adopted_until_the_same_moment() -> None:
    clock = Clock()
    board = BreakerBoard(BreakerConfig(), clock)
    board.get("m").open_remotely(clock.now + 3)
    assert board.get("m").state() is BreakerState.OPEN
    assert board.get("m").remote
    board.get("m").open_remotely(clock.now - 1)  # stale: ignored
    assert board.get("m").retry_after() == pytest.approx(3)


# -- retry rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (status(429), Verdict.RETRY),
        (status(502), Verdict.RETRY),
        (status(503), Verdict.RETRY),
        (status(504), Verdict.RETRY),
        (status(500), Verdict.FALLBACK),
        (status(401), Verdict.FALLBACK),  # our key: another provider may take it
        (status(400), Verdict.FINAL),
        (status(422), Verdict.FINAL),
        (transport(), Verdict.RETRY),
        (UpstreamError("not JSON"), Verdict.FALLBACK),
        (UpstreamTimeoutError("slow"), Verdict.FALLBACK),
        (GatewayError("bug"), Verdict.FINAL),
    ],
)
def test_classify(error: GatewayError, verdict: Verdict) -> None:
    assert classify(error) is verdict


def test_retry_after_seconds_or_http_date() -> None:
    assert retry_after_seconds(status(429, "3")) == 3.0
    assert retry_after_seconds(status(429, "Wed, 21 Oct 2015 07:28:10 GMT"), now=1445412480) == 10
    assert retry_after_seconds(status(429, "soon")) is None
    assert retry_after_seconds(status(429)) is None


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    config = RetryConfig(backoff_initial=0.1, backoff_max=0.5)
    rng = random.Random(1)
    waits = [[backoff(n, config, None, rng) for _ in range(200)] for n in range(5)]
    assert 0.08 < max(waits[0]) <= 0.1
    assert 0.18 < max(waits[1]) <= 0.2
    assert 0.45 < max(waits[4]) <= 0.5  # capped
    assert min(waits[4]) < 0.1  # full jitter reaches down to zero
    assert backoff(0, config, 2.5, rng) == 2.5  # the upstream's Retry-After wins


# -- dispatcher -------------------------------------------------------------------------

Behaviour = dict[str, list[GatewayError | None]]  # model -> per-try outcome (None = ok)


def scripted(
    behaviour: Behaviour,
) -> tuple[Callable[[str, float | None], Awaitable[str]], list[str]]:
    calls: list[str] = []

    async def attempt(model: str, left: float | None) -> str:
        calls.append(model)
        outcomes = behaviour.get(model, [])
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is not None:
            raise outcome
        return f"answer from {model}"

    return attempt, calls


def dispatcher(
    policy: str = "", *, breaker: BreakerConfig | None = None, clock: Clock | None = None
) -> tuple[Dispatcher, list[float]]:
    config, _ = load_config_text(
        "providers: {mock: {type: mock}}\n"
        "models:\n  a: {provider: mock, fallbacks: [c]}\n  b: {provider: mock}\n"
        "  c: {provider: mock}\n  d: {provider: mock}\n"
        "decisions: [{name: all, when: true, route: {candidates: [a, b]}}]\n" + policy
    )
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    limits = RateLimits(config.limits, SharedState(StateConfig()).limit_storages)
    board = BreakerBoard(breaker or config.resilience.breaker, clock or Clock())
    return (
        Dispatcher(
            config.resilience.retries,
            UpstreamFeedback(board),
            limits,
            config.models,
            rng=random.Random(0),
            sleep=sleep,
        ),
        waits,
    )


async def test_first_success_wins_with_one_attempt() -> None:
    d, _ = dispatcher()
    attempt, calls = scripted({})
    log = AttemptLog()
    outcome = await d.run(("a", "b"), attempt, log)
    assert (outcome.model, calls, log.attempts) == ("a", ["a"], 1)


async def test_retryable_error_retries_the_same_model_after_backoff() -> None:
    d, waits = dispatcher()
    attempt, calls = scripted({"a": [status(503)]})
    outcome = await d.run(("a", "b"), attempt, AttemptLog())
    assert outcome.model == "a"
    assert calls == ["a", "a"]
    assert len(waits) == 1
    assert 0 <= waits[0] <= 0.1


async def test_retry_after_is_honoured_up_to_the_cap_then_falls_back() -> None:
    d, waits = dispatcher("resilience: {retries: {max_retry_after: 2}}")
    attempt, calls = scripted({"a": [status(429, "1.5")]})
    await d.run(("a", "b"), attempt, AttemptLog())
    assert waits == [1.5]
    assert calls == ["a", "a"]
    attempt, calls = scripted({"a": [status(429, "30")]})
    outcome = await d.run(("a", "b"), attempt, AttemptLog())
    assert outcome.model == "c"
    assert calls == ["a", "c"]


async def test_non_retryable_failure_falls_back_at_once_through_the_models_fallbacks() -> None:
    d, waits = dispatcher()
    attempt, calls = scripted({"a": [status(500)], "c": [status(500)]})
    log = AttemptLog()
    outcome = await d.run(("a", "b"), attempt, log)
    assert calls == ["a", "c", "b"]
    assert outcome.model == "b"
    assert waits == []
    assert log.tried == [("a", "upstream_error"), ("c", "upstream_error"), ("b", None)]


async def test_client_errors_are_answered_at_once() -> None:
    d, _ = dispatcher()
    attempt, calls = scripted({"a": [status(400)]})
    with pytest.raises(UpstreamStatusError) as info:
        await d.run(("a", "b"), attempt, AttemptLog())
    assert info.value.status_code == 400
    assert calls == ["a"]


async def test_the_attempt_budget_bounds_the_whole_request() -> None:
    d, _ = dispatcher("resilience: {retries: {max_attempts: 3, attempts_per_model: 2}}")
    attempt, calls = scripted({m: [status(503)] * 5 for m in "abc"})
    with pytest.raises(GatewayError) as info:
        await d.run(("a", "b"), attempt, AttemptLog())
    assert calls == ["a", "a", "c"]
    assert info.value.status_code == 503
    assert info.value.code == "all_candidates_failed"
    assert "'a'" in info.value.message
    assert "'c'" in info.value.message


async def test_calls_of_one_request_share_its_budget_beyond_their_first_attempts() -> None:
    # A multi-call request: max_attempts 3 leaves 2 attempts beyond the planned calls'
    # first ones, for all of them together, parallel calls included.
    d, _ = dispatcher("resilience: {retries: {max_attempts: 3, attempts_per_model: 2}}")
    attempt, calls = scripted({m: [status(503)] * 5 for m in "abcd"})
    budget = AttemptBudget(d.retries.max_attempts)
    logs = [AttemptLog() for _ in range(3)]
    runs = [d.run((m,), attempt, log, budget=budget) for m, log in zip("abd", logs, strict=True)]
    results = await asyncio.gather(*runs, return_exceptions=True)
    assert all(isinstance(r, GatewayError) for r in results)
    assert sum(log.attempts for log in logs) == len(calls) == 3 + 2
    assert [log.tried[0][0] for log in logs] == ["a", "b", "d"]  # each made its first
    assert budget.extra == 0
    # A later call still makes its first attempt, and nothing more.
    late = AttemptLog()
    with pytest.raises(GatewayError):
        await d.run(("a",), attempt, late, budget=budget)
    assert late.attempts == 1


async def test_a_single_model_keeps_its_own_error() -> None:
    d, _ = dispatcher()
    attempt, _ = scripted({"b": [UpstreamTimeoutError("model 'b' timed out")]})
    with pytest.raises(UpstreamTimeoutError):
        await d.run(("b",), attempt, AttemptLog())


async def test_open_breakers_are_skipped_and_none_healthy_is_503_with_retry_after() -> None:
    clock = Clock()
    d, _ = dispatcher(breaker=BreakerConfig(failures=1, cooldown=7), clock=clock)
    attempt, calls = scripted({"a": [status(500)], "c": [status(500)]})
    await d.run(("a", "b"), attempt, AttemptLog())
    attempt, calls = scripted({})
    log = AttemptLog()
    outcome = await d.run(("a", "b"), attempt, log)
    assert outcome.model == "b"
    assert calls == ["b"]
    # a's fallback c is brought in, and passed over for its own open breaker.
    assert log.skipped == [("a", "breaker_open"), ("c", "breaker_open")]
    d.breakers.record_failure("b")
    with pytest.raises(GatewayError) as info:
        await d.run(("a", "b"), attempt, AttemptLog())
    assert info.value.status_code == 503
    assert info.value.code == "no_healthy_candidate"
    assert info.value.headers["retry-after"] == "7"


async def test_model_over_its_rate_limit_is_skipped_and_alone_gives_429() -> None:
    d, _ = dispatcher("limits: {per_model: {b: {requests_per_minute: 1}}}")
    attempt, _calls = scripted({})
    assert (await d.run(("b", "d"), attempt, AttemptLog())).model == "b"
    assert (await d.run(("b", "d"), attempt, AttemptLog())).model == "d"
    with pytest.raises(RateLimitError) as info:
        await d.run(("b",), attempt, AttemptLog())
    assert info.value.status_code == 429
    assert int(info.value.headers["retry-after"]) >= 1


async def test_a_model_passed_over_brings_in_its_fallbacks() -> None:
    # Asked for by name (one candidate), a model whose breaker is open or whose own
    # limit is spent answers through its `fallbacks:` (a -> c), not with a 503 or 429.
    d, _ = dispatcher(
        "limits: {per_model: {a: {requests_per_minute: 1}}}",
        breaker=BreakerConfig(failures=1, cooldown=60),
    )
    attempt, calls = scripted({})
    assert (await d.run(("a",), attempt, AttemptLog())).model == "a"
    log = AttemptLog()
    assert (await d.run(("a",), attempt, log)).model == "c"
    assert log.skipped == [("a", "rate_limited")]
    d.breakers.record_failure("a")
    log = AttemptLog()
    assert (await d.run(("a",), attempt, log)).model == "c"
    assert log.skipped == [("a", "breaker_open")]
    assert calls == ["a", "c", "c"]


# -- rate limits (memory) ----------------------------------------------------------------


def limits(**per_client: float) -> tuple[RateLimits, list[tuple[str, str]]]:
    refused: list[tuple[str, str]] = []
    config = LimitsConfig.model_validate({"per_client": per_client})
    storages = SharedState(StateConfig()).limit_storages
    return RateLimits(config, storages, lambda s, k: refused.append((s, k))), refused


async def test_requests_per_minute_admits_exactly_the_limit_per_client() -> None:
    rl, refused = limits(requests_per_minute=3)
    for _ in range(3):
        await rl.admit_client("k1")
    with pytest.raises(RateLimitError) as info:
        await rl.admit_client("k1")
    await rl.admit_client("k2")  # another key has its own allowance
    headers = info.value.headers
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert refused == [("client", "requests")]


async def test_tokens_are_charged_after_the_call_and_block_once_spent() -> None:
    rl, refused = limits(tokens_per_minute=100)
    await rl.admit_client("k")
    await rl.charge("k", "m", tokens=60, dollars=0)
    await rl.admit_client("k")  # 40 left: still admitted
    await rl.charge("k", "m", tokens=60, dollars=0)  # overshoots: capped at the limit
    with pytest.raises(RateLimitError) as info:
        await rl.admit_client("k")
    assert info.value.headers["x-ratelimit-limit-tokens"] == "100"
    assert refused == [("client", "tokens")]


async def test_dollar_budget_per_day() -> None:
    rl, _ = limits(dollars_per_day=0.01)
    await rl.admit_client("k")
    await rl.charge("k", "m", tokens=0, dollars=0.004)
    await rl.admit_client("k")
    await rl.charge("k", "m", tokens=0, dollars=0.007)
    with pytest.raises(RateLimitError) as info:
        await rl.admit_client("k")
    assert info.value.code == "budget_exceeded"
    assert "$0.01" in info.value.message


async def test_budget_refusal_does_not_use_up_a_request_slot() -> None:
    rl, _ = limits(requests_per_minute=2, tokens_per_minute=10)
    await rl.admit_client("k")
    await rl.charge("k", "m", tokens=10, dollars=0)
    with pytest.raises(RateLimitError):
        await rl.admit_client("k")  # tokens spent: refused before counting the request
    moving, _ = rl.storages.current()
    stats = await moving.get_window_stats(rl.client[0].item, "client", "k", "requests")
    assert stats.remaining == 1


async def test_a_model_skipped_for_its_open_breaker_spends_none_of_its_rate_limit() -> None:
    clock = Clock()
    d, _ = dispatcher(
        "limits: {per_model: {a: {requests_per_minute: 1}}}",
        breaker=BreakerConfig(failures=1, cooldown=5),
        clock=clock,
    )
    d.breakers.record_failure("a")
    attempt, calls = scripted({})
    log = AttemptLog()
    assert (await d.run(("a", "b"), attempt, log)).model == "c"  # a's fallback
    assert log.skipped == [("a", "breaker_open")]
    clock.now += 5  # half-open: the probe still finds its one request of the minute
    assert (await d.run(("a", "b"), attempt, AttemptLog())).model == "a"
    assert calls == ["c", "a"]


async def test_a_cancelled_probe_gives_the_probe_back() -> None:
    clock = Clock()
    d, _ = dispatcher(breaker=BreakerConfig(failures=1, cooldown=5), clock=clock)
    d.breakers.record_failure("b")
    clock.now += 5  # half-open

    async def cancelled(model: str, left: float | None) -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await d.run(("b",), cancelled, AttemptLog())
    attempt, calls = scripted({})
    assert (await d.run(("b",), attempt, AttemptLog())).model == "b"  # probe available again
    assert calls == ["b"]
