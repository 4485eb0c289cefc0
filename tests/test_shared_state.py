"""Shared state across replicas, with real parts: a real ``redis-server`` on a free
loopback port, gateways as separate processes (``python -m router_proxy serve``), and the
fake upstream as a real HTTP server that fails on demand.

Every test uses its own Redis key prefix, so they do not see each other's counters.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from router_proxy.resilience.breaker import BreakerBoard, BreakerState
from router_proxy.resilience.config import BreakerConfig, StateConfig
from router_proxy.resilience.shared_breakers import SharedBreakers
from router_proxy.resilience.shared_state import SharedState
from tests.support.gateway_process import GatewayProcess, start_all
from tests.support.redis_server import RedisServer, require_redis_server
from tests.support.upstream import FakeUpstream

ADMIN = {"authorization": "Bearer admin-key"}
SYNC = 0.2  # state.sync_interval of every policy here
# state.timeout of every policy here: on a loaded machine a Redis answer can take longer
# than the default 0.25 s, which counts as an outage (requests then count locally, and a
# limit looks one request tighter). A stopped Redis refuses connections at once, so this
# does not slow the outage tests down.
REDIS_TIMEOUT = 5.0
# Waits end as soon as their condition holds; the bound is only for a broken gateway.
WAIT = 15.0
OUTAGE_LOG = "shared state (Redis) unavailable"
BACK_LOG = "shared state (Redis) is back"


def policy(upstream: FakeUpstream, redis: RedisServer, prefix: str, body: str) -> str:
    head = f"""\
server: {{admin_keys: [admin-key]}}
providers:
  up: {{type: openai, base_url: "{upstream.base_url}/v1"}}
state: {{backend: redis, url: "{redis.url}", key_prefix: {prefix}, sync_interval: {SYNC},
        timeout: {REDIS_TIMEOUT}}}
"""
    return head + body


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(require_redis_server()) as server:
        yield server


def chat(base_url: str, model: str = "auto") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}]}
    return httpx.post(base_url + "/v1/chat/completions", json=body, timeout=10)


def model_health(base_url: str, model: str) -> dict[str, Any]:
    answer = httpx.get(base_url + "/admin/models", headers=ADMIN, timeout=5).json()
    health: dict[str, Any] = answer["models"][model]
    return health


def shared_state_up(base_url: str) -> float:
    for line in httpx.get(base_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("router_shared_state_up "):
            return float(line.split()[1])
    raise AssertionError("router_shared_state_up is missing from /metrics")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds it took for ``condition`` to hold; fails after ``timeout``."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.02)
    return time.monotonic() - began


LIMIT = 10
LIMIT_POLICY = f"""\
models:
  echo: {{provider: up, upstream_model: echo}}
limits: {{per_client: {{requests_per_minute: {LIMIT}}}}}
decisions:
  - {{name: default, when: true, route: {{candidates: [echo]}}}}
"""


def test_two_replicas_never_admit_more_than_one_shared_limit(
    upstream: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    """30 concurrent requests, half to each replica, against one limit of 10 a minute:
    exactly 10 are admitted in all (unshared counters would admit 10 on each)."""
    text = policy(upstream, redis_server, "limit", LIMIT_POLICY)
    replicas = GatewayProcess(text, tmp_path, "a"), GatewayProcess(text, tmp_path, "b")
    start_all(*replicas)
    try:

        async def fire() -> list[httpx.Response]:
            body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
            async with httpx.AsyncClient(timeout=10) as client:
                calls = [
                    client.post(replicas[i % 2].base_url + "/v1/chat/completions", json=body)
                    for i in range(3 * LIMIT)
                ]
                return await asyncio.gather(*calls)

        answers = asyncio.run(fire())
    finally:
        for replica in replicas:
            replica.stop()
    assert Counter(a.status_code for a in answers) == {200: LIMIT, 429: 2 * LIMIT}
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-limit-requests"] == str(LIMIT)
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert redis_server.client().keys("limit:limits:*"), "the counter lives in Redis"


BREAKER_POLICY = """\
models:
  flaky: {provider: up, upstream_model: script-shared-flaky}
  backup: {provider: up, upstream_model: echo}
resilience:
  breaker: {failures: 2, cooldown: 3}
  retries: {attempts_per_model: 1}
decisions:
  - {name: default, when: true, route: {candidates: [flaky, backup]}}
"""


def test_a_breaker_opened_on_one_replica_is_honoured_and_closed_on_all(
    upstream: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    text = policy(upstream, redis_server, "breaker", BREAKER_POLICY)
    a, b = GatewayProcess(text, tmp_path, "a"), GatewayProcess(text, tmp_path, "b")
    start_all(a, b)
    try:
        # Replica A: two failures open its breaker; both requests fall back.
        upstream.scripts["shared-flaky"].extend(["fail-500", "fail-500"])
        for _ in range(2):
            answer = chat(a.base_url)
            assert answer.status_code == 200
            assert answer.headers["x-router-model"] == "backup"
        assert model_health(a.base_url, "flaky")["breaker"] == "open"

        # Replica B, which never called it, learns it at its next sync.
        wait_until(lambda: model_health(b.base_url, "flaky")["breaker"] == "open", WAIT, "B opens")
        assert model_health(b.base_url, "flaky")["opened_by_other_replica"] is True
        calls = upstream.calls["shared-flaky"]
        for _ in range(3):
            assert chat(b.base_url).headers["x-router-model"] == "backup"
        assert upstream.calls["shared-flaky"] == calls, "B skipped the open model"

        # After the cooldown B's probe succeeds: closed on B, and on A at its next sync
        # (A opened it itself, and must not publish it again).
        wait_until(
            lambda: model_health(b.base_url, "flaky")["breaker"] == "half_open", WAIT, "half-open"
        )
        assert chat(b.base_url).headers["x-router-model"] == "flaky"
        assert model_health(b.base_url, "flaky")["breaker"] == "closed"
        wait_until(
            lambda: model_health(a.base_url, "flaky")["breaker"] == "closed", WAIT, "A closes"
        )
        time.sleep(3 * SYNC)
        assert redis_server.client().hgetall("breaker:breakers") == {}
        assert chat(a.base_url).headers["x-router-model"] == "flaky"
    finally:
        a.stop()
        b.stop()


def test_a_probe_success_elsewhere_closes_a_breaker_opened_here(
    redis_server: RedisServer,
) -> None:
    """Regression: the replica that opened a breaker took the hash entry's deletion (by
    another replica's successful probe) for a lost write, wrote it back, and stayed
    half-open; every replica then read the stale entry forever."""

    async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not await check():
            assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
            await asyncio.sleep(0.01)

    async def scenario() -> tuple[BreakerState, dict[bytes, bytes]]:
        config = StateConfig(
            backend="redis", url=redis_server.url, key_prefix="unit-close", timeout=REDIS_TIMEOUT
        )
        boards = [BreakerBoard(BreakerConfig(failures=1, cooldown=0.3)) for _ in range(2)]
        states = [SharedState(config) for _ in range(2)]
        for board, state in zip(boards, states, strict=True):
            SharedBreakers(board, state)
        redis = states[1].redis
        assert redis is not None

        async def b_learns() -> bool:
            await states[1].sync_once()
            return boards[1].get("m").remote

        async def b_half_open() -> bool:
            return boards[1].get("m").state() is BreakerState.HALF_OPEN

        async def deleted() -> bool:
            return not await redis.hexists("unit-close:breakers", "m")

        try:
            boards[0].record_failure("m")  # opens on A; the write runs in the background
            await eventually(b_learns, "B learns A's opening")  # once the write is done
            await eventually(b_half_open, "the cooldown")
            assert boards[1].allows("m")  # B's probe...
            boards[1].record_success("m")  # ... succeeds: B deletes the entry
            await eventually(deleted, "B's deletion")
            await states[0].sync_once()
            await states[0].sync_once()
            assert states[0].redis is not None
            return boards[0].get("m").state(), await states[0].redis.hgetall("unit-close:breakers")
        finally:
            for state in states:
                await state.aclose()

    state, shared = asyncio.run(scenario())
    assert state is BreakerState.CLOSED
    assert shared == {}


LATENCY_POLICY = """\
models:
  slow: {provider: up, upstream_model: slow}
  fast: {provider: up, upstream_model: echo}
decisions:
  - {name: default, when: true, route: {candidates: [slow, fast], algorithm: latency}}
"""


def test_latency_seen_by_one_replica_steers_the_other(
    upstream: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Replica B has called neither model; on its own it would try the unmeasured ``slow``
    first (candidates' order). With A's observations shared it picks ``fast``."""
    text = policy(upstream, redis_server, "latency", LATENCY_POLICY)
    a, b = GatewayProcess(text, tmp_path, "a"), GatewayProcess(text, tmp_path, "b")
    start_all(a, b)
    try:
        for model in ("slow", "fast", "slow", "fast"):
            assert chat(a.base_url, model).status_code == 200

        def b_knows() -> bool:
            slow, fast = (model_health(b.base_url, m)["latency_ms"] for m in ("slow", "fast"))
            return slow is not None and fast is not None

        wait_until(b_knows, WAIT, "B sees A's latencies")
        slow_ms = model_health(b.base_url, "slow")["latency_ms"]
        fast_ms = model_health(b.base_url, "fast")["latency_ms"]
        assert slow_ms >= 250  # the upstream sleeps 500 ms before answering
        assert fast_ms < slow_ms
        slow_calls = sum(1 for _, _, body in upstream.requests if body.get("model") == "slow")
        for _ in range(3):
            assert chat(b.base_url).headers["x-router-model"] == "fast"
        assert slow_calls == sum(
            1 for _, _, body in upstream.requests if body.get("model") == "slow"
        )
    finally:
        a.stop()
        b.stop()


OUTAGE_LIMIT = 6
OUTAGE_POLICY = f"""\
models:
  echo: {{provider: up, upstream_model: echo}}
  broken: {{provider: up, upstream_model: fail-500}}
resilience:
  breaker: {{failures: 2, cooldown: 60}}
  retries: {{attempts_per_model: 1}}
limits: {{per_client: {{requests_per_minute: {OUTAGE_LIMIT}}}}}
decisions:
  - {{name: default, when: true, route: {{candidates: [echo]}}}}
"""


def test_redis_outage_serves_on_local_state_and_resyncs(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    with RedisServer(require_redis_server()) as redis:  # its own: this one goes down
        gateway = GatewayProcess(policy(upstream, redis, "outage", OUTAGE_POLICY), tmp_path)
        with gateway:
            assert chat(gateway.base_url).status_code == 200
            assert shared_state_up(gateway.base_url) == 1

            redis.stop()
            wait_until(lambda: shared_state_up(gateway.base_url) == 0, WAIT, "gauge 0")
            # A breaker opens during the outage (only this replica knows it)...
            assert [chat(gateway.base_url, "broken").status_code for _ in range(2)] == [502] * 2
            assert model_health(gateway.base_url, "broken")["breaker"] == "open"
            # ... and the client limit is enforced on local counters (the 2 above count).
            statuses = [chat(gateway.base_url).status_code for _ in range(OUTAGE_LIMIT)]
            assert statuses == [200] * (OUTAGE_LIMIT - 2) + [429] * 2
            time.sleep(5 * SYNC)  # several syncs fail: still one log line

            redis.start()  # same port, empty
            wait_until(lambda: shared_state_up(gateway.base_url) == 1, WAIT, "gauge back to 1")
            wait_until(
                lambda: b"broken" in redis.client().hgetall("outage:breakers"), WAIT, "resync"
            )
            assert float(redis.client().hget("outage:breakers", "broken") or 0) > time.time()
            assert chat(gateway.base_url).status_code == 200
            assert redis.client().keys("outage:limits:*"), "counting in Redis again"
        output = gateway.output()
    assert output.count(OUTAGE_LOG) == 1, output
    assert output.count(BACK_LOG) == 1, output
