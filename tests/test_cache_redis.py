"""The response cache shared through a real Redis by two gateway processes (replicas), and
what an outage of Redis does: the cache is bypassed, every request is still served."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.gateway_process import GatewayProcess, start_all
from tests.support.redis_server import RedisServer, require_redis_server
from tests.support.upstream import FakeUpstream

ADMIN = {"authorization": "Bearer admin-key"}


def policy(upstream: FakeUpstream, redis: RedisServer, prefix: str) -> str:
    return f"""\
server: {{admin_keys: [admin-key], api_keys: [key-a, key-b]}}
providers:
  up: {{type: openai, base_url: "{upstream.base_url}/v1"}}
models:
  echo: {{provider: up, upstream_model: echo}}
state: {{backend: redis, url: "{redis.url}", key_prefix: {prefix}, sync_interval: 0.2}}
decisions:
  - {{name: support, when: false, route: {{candidates: [echo]}}, cache: {{mode: semantic}}}}
  - {{name: faq, when: true, route: {{candidates: [echo]}}, cache: {{mode: exact, ttl: 60}}}}
"""


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(require_redis_server()) as server:
        yield server


def sdk(gateway: GatewayProcess, key: str = "key-a") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def ask(
    client: openai.OpenAI, prompt: str, stream: bool = False, model: str = "auto"
) -> tuple[str, str]:
    messages = [{"role": "user", "content": prompt}]
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=messages, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        return text, raw.headers["x-router-cache"]
    reply = client.chat.completions.with_raw_response.create(model=model, messages=messages)
    return reply.parse().choices[0].message.content or "", reply.headers["x-router-cache"]


def test_a_hit_on_one_replica_serves_the_other(
    tmp_path, upstream: FakeUpstream, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    text = policy(upstream, redis_server, "cache-replicas")
    a = GatewayProcess(text, tmp_path, "a")
    b = GatewayProcess(text, tmp_path, "b")
    start_all(a, b)
    try:
        calls = len(upstream.requests)
        with sdk(a) as on_a, sdk(b) as on_b, sdk(b, "key-b") as other_tenant:
            assert ask(on_a, "opening hours?") == ("echo: opening hours?", "miss")
            assert ask(on_b, "opening hours?") == ("echo: opening hours?", "hit")
            assert ask(other_tenant, "opening hours?")[1] == "miss"
            assert ask(on_b, "opening hours, streamed", stream=True)[1] == "miss"
            assert ask(on_a, "opening hours, streamed", stream=True) == (
                "echo: opening hours, streamed",
                "hit",
            )
            # Semantic: a paraphrase on B of what A stored (B's index learns A's prompts).
            asked = "How do I reset my password?"
            assert ask(on_a, asked, model="support") == (f"echo: {asked}", "miss")
            for paraphrase in (
                "how can i reset my password",
                "What's the way to reset my password?",
            ):
                assert ask(on_b, paraphrase, model="support") == (f"echo: {asked}", "hit")
            assert ask(on_b, "How do I not reset my password?", model="support")[1] == "miss"
        assert len(upstream.requests) - calls == 5
        # A purge on one replica empties the shared store for all.
        purge = httpx.post(a.base_url + "/admin/cache/purge", json={"all": True}, headers=ADMIN)
        assert purge.json()["purged"] == 5
        with sdk(b) as on_b:
            assert ask(on_b, "opening hours?")[1] == "miss"
    finally:
        a.stop()
        b.stop()


def test_redis_outage_bypasses_the_cache_and_fails_no_request(
    tmp_path, upstream: FakeUpstream
) -> None:  # type: ignore[no-untyped-def]
    with (
        RedisServer(require_redis_server()) as redis,
        GatewayProcess(policy(upstream, redis, "cache-outage"), tmp_path) as gateway,
        sdk(gateway) as client,
    ):
        assert ask(client, "refund policy")[1] == "miss"
        assert ask(client, "refund policy")[1] == "hit"
        redis.stop()
        outcomes = [ask(client, "refund policy")[1] for _ in range(10)]
        outcomes += [ask(client, "refund policy", stream=True)[1] for _ in range(3)]
        assert set(outcomes) == {"bypass"}  # and each was answered (ask raises otherwise)
        metrics = httpx.get(gateway.base_url + "/metrics", timeout=5).text
        assert 'router_cache_bypass_total{decision="faq"} 13.0' in metrics
        redis.start()  # empty: what was cached is gone
        for _ in range(100):  # the sync loop's next good ping brings the cache back
            if ask(client, "refund policy")[1] != "bypass":
                break
        assert ask(client, "refund policy")[1] == "hit"
