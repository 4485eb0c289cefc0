"""Request coalescing end to end: identical requests that arrive while the first one's
upstream call is in flight wait for its answer instead of each calling the upstream.

The official OpenAI SDK (async) -> a gateway on a real port -> a real loopback upstream
that counts its calls and holds each prompt's first call until the test opens its gate.
The test opens the gate once the gateway says the followers are waiting (no timing).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from router_proxy.cache.coalesce import Flights
from router_proxy.cache.config import DecisionCacheConfig
from router_proxy.cache.entry import CachedAnswer
from router_proxy.cache.policy import decision_policies
from router_proxy.cache.store import Slot
from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.server.app import create_app
from tests.support.logs import log_line
from tests.support.serving import ServerThread
from tests.support.upstream import StreamCut  # (importing it keeps its cuts out of the log)

KEY = "key-coalesce"
PROMPT_TOKENS = 10
COST_IN, COST_OUT = 1000.0, 2000.0  # $ per million tokens
POLL_LIMIT = 20.0  # seconds a test waits for the gateway to reach a state before failing


class HeldUpstream:
    """An OpenAI-format upstream that counts calls per prompt. The first call for each
    prompt waits for ``gate`` (with model ``held-all``, every call does); with model
    ``held-fail`` that call then fails (500), with ``held-cut`` its stream is dropped
    after one chunk; later calls answer. Answers echo
    the prompt, whole or streamed."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: Counter[str] = Counter()
        self.server = ServerThread(
            Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        )

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    async def _chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        prompt = body["messages"][-1]["content"]
        self.calls[prompt] += 1
        if self.calls[prompt] == 1 or body["model"] == "held-all":
            await asyncio.to_thread(self.gate.wait)  # set from the test's thread
            if body["model"] == "held-fail":
                error = {"message": "the upstream broke", "type": "api_error"}
                return JSONResponse({"error": error}, status_code=500)
        text = f"echo: {prompt}"
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": len(text.split()),
            "total_tokens": PROMPT_TOKENS + len(text.split()),
        }
        if body.get("stream"):
            cut = body["model"] == "held-cut" and self.calls[prompt] == 1
            return StreamingResponse(
                _events(body["model"], text, usage, cut), media_type="text/event-stream"
            )
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse(
            {
                "id": "chatcmpl-held",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [choice],
                "usage": usage,
            }
        )


async def _events(model: str, text: str, usage: dict[str, int], cut: bool) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        data = {
            "id": "chatcmpl-held",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""}, None)
    if cut:
        raise StreamCut("dropped mid-stream")
    for i, word in enumerate(text.split(" ")):
        yield chunk({"content": word if i == 0 else " " + word}, None)
    yield chunk({}, "stop", usage=usage)
    yield b"data: [DONE]\n\n"


POLICY = """\
server: {{api_keys: [{key}]}}
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: sk-held}}
models:
  held: {{provider: up, cost: {{input_per_mtok: {cin}, output_per_mtok: {cout}}}}}
  held-fail: {{provider: up}}
  held-cut: {{provider: up}}
  held-all: {{provider: up}}
decisions:
  - {{name: failing, when: false, route: {{candidates: [held-fail]}}, cache: {{mode: exact}}}}
  - {{name: cutting, when: false, route: {{candidates: [held-cut]}}, cache: {{mode: exact}}}}
  - name: impatient
    when: false
    route: {{candidates: [held]}}
    cache: {{mode: exact, coalesce_wait: 0.2}}
  - name: alone
    when: false
    route: {{candidates: [held-all]}}  # no answer is stored before every request looked
    cache: {{mode: exact, coalesce: false}}
  - {{name: faq, when: true, route: {{candidates: [held]}}, cache: {{mode: exact}}}}
"""


class Gateway:
    def __init__(self, up: HeldUpstream) -> None:
        text = POLICY.format(key=KEY, url=up.server.base_url, cin=COST_IN, cout=COST_OUT)
        config, _ = load_config_text(text, env={})
        self.app = create_app(config)
        self.server = ServerThread(self.app)

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def flights(self) -> Flights:
        cache = self.app.state.slot.current.engine.cache
        assert cache is not None
        flights: Flights = cache.flights
        return flights

    def metric(self, name: str) -> float:
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0


@pytest.fixture(scope="module")
def up() -> Iterator[HeldUpstream]:
    upstream = HeldUpstream()
    with upstream.server:
        yield upstream


@pytest.fixture(scope="module")
def gateway(up: HeldUpstream) -> Iterator[Gateway]:
    gw = Gateway(up)
    with gw.server:
        yield gw


@pytest.fixture(autouse=True)
def closed_gate(up: HeldUpstream) -> Iterator[None]:
    up.gate.clear()
    yield
    up.gate.set()  # whatever happened, nothing stays held


_counter = itertools.count()


def fresh(text: str = "what are your opening hours") -> str:
    return f"{text} #{next(_counter)}"


async def until(condition: Any, what: str) -> None:
    """Wait for the gateway to reach a state (a bound, not a timing assertion)."""
    deadline = time.monotonic() + POLL_LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"never reached: {what}"
        await asyncio.sleep(0.005)


def sdk(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0)


async def ask(client: openai.AsyncOpenAI, prompt: str, model: str = "auto") -> tuple[str, str]:
    """(the reply's text, the x-router-cache header)."""
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}]
    )
    return raw.parse().choices[0].message.content or "", raw.headers["x-router-cache"]


async def ask_stream(
    client: openai.AsyncOpenAI, prompt: str, model: str = "auto"
) -> tuple[str, str]:
    async with client.chat.completions.with_streaming_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], stream=True
    ) as response:
        outcome = response.headers["x-router-cache"]
        stream = await response.parse()
        text = ""
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    return text, outcome


def test_a_burst_of_identical_requests_calls_the_upstream_once(
    gateway: Gateway, up: HeldUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    prompt, n = fresh(), 10
    coalesced = 'router_cache_coalesced_total{decision="faq"}'
    saved = 'router_cache_saved_dollars_total{decision="faq"}'
    cost = 'router_cost_dollars_total{model="held"}'
    before = {name: gateway.metric(name) for name in (coalesced, saved, cost)}

    answers = burst(gateway, up, n, lambda client: ask(client, prompt))
    assert up.calls[prompt] == 1
    assert {text for text, _ in answers} == {f"echo: {prompt}"}
    assert sorted(outcome for _, outcome in answers) == ["coalesced"] * (n - 1) + ["miss"]
    one_call = (PROMPT_TOKENS * COST_IN + len(f"echo: {prompt}".split()) * COST_OUT) / 1e6
    assert gateway.metric(coalesced) == before[coalesced] + n - 1
    assert gateway.metric(cost) == pytest.approx(before[cost] + one_call)  # paid once
    assert gateway.metric(saved) == pytest.approx(before[saved] + (n - 1) * one_call)
    lines = [dict(r.__dict__["fields"]) for r in caplog.records if r.name == ACCESS_LOGGER]
    followers = [line for line in lines if line["cache"] == "coalesced"]
    assert len(followers) == n - 1
    assert {(f["cost_usd"], f["model"], f["upstream_ms"]) for f in followers} == {(0, "held", None)}
    assert [f["saved_usd"] for f in followers] == [pytest.approx(one_call)] * (n - 1)
    assert len(gateway.flights) == 0
    # And the answer was stored: the next one is a plain hit.
    assert asyncio.run(_ask_once(gateway, prompt)) == (f"echo: {prompt}", "hit")


def burst(
    gateway: Gateway, up: HeldUpstream, n: int, one: Callable[[Any], Awaitable[Any]]
) -> list[Any]:
    """``n`` identical requests at once: the upstream holds the first call until the
    other ``n - 1`` wait on it, then answers. Each one's answer, or the error it raised."""

    async def run() -> list[Any]:
        async with sdk(gateway) as client:
            answers = [asyncio.create_task(one(client)) for _ in range(n)]
            await until(lambda: gateway.flights.waiting == n - 1, f"{n - 1} followers waiting")
            assert sum(up.calls.values()) >= 1
            up.gate.set()
            return await asyncio.gather(*answers, return_exceptions=True)

    return asyncio.run(run())


async def _ask_once(gateway: Gateway, prompt: str, model: str = "auto") -> tuple[str, str]:
    async with sdk(gateway) as client:
        return await ask(client, prompt, model)


def test_followers_of_a_failed_leader_call_the_upstream_themselves(
    gateway: Gateway, up: HeldUpstream
) -> None:
    prompt, n = fresh(), 5

    answers = burst(gateway, up, n, lambda client: ask(client, prompt, "failing"))
    failed = [a for a in answers if isinstance(a, Exception)]
    assert len(failed) == 1  # the leader: the upstream's failure is its own
    assert isinstance(failed[0], openai.APIStatusError)
    served = [a for a in answers if not isinstance(a, Exception)]
    assert served == [(f"echo: {prompt}", "miss")] * (n - 1)
    assert up.calls[prompt] == n
    assert len(gateway.flights) == 0


def test_followers_stop_waiting_for_a_leader_slower_than_coalesce_wait(
    gateway: Gateway, up: HeldUpstream
) -> None:
    prompt = fresh()

    async def run() -> None:
        async with sdk(gateway) as client:
            leader = asyncio.create_task(ask(client, prompt, "impatient"))
            await until(lambda: up.calls[prompt] == 1, "the leader's call in flight")
            # The gate stays closed: these are answered while the leader is still held.
            followers = await asyncio.gather(*(ask(client, prompt, "impatient") for _ in range(3)))
            assert not leader.done()
            assert {text for text, _ in followers} == {f"echo: {prompt}"}
            assert {outcome for _, outcome in followers} <= {"miss", "coalesced", "hit"}
            assert up.calls[prompt] >= 2
            up.gate.set()
            assert await leader == (f"echo: {prompt}", "miss")

    asyncio.run(run())


def test_different_requests_are_not_coalesced(gateway: Gateway, up: HeldUpstream) -> None:
    prompts = [fresh() for _ in range(3)]

    async def run() -> list[tuple[str, str]]:
        async with sdk(gateway) as client:
            answers = [asyncio.create_task(ask(client, p)) for p in prompts]
            await until(lambda: all(up.calls[p] == 1 for p in prompts), "three upstream calls")
            assert gateway.flights.waiting == 0
            up.gate.set()
            return await asyncio.gather(*answers)

    assert asyncio.run(run()) == [(f"echo: {p}", "miss") for p in prompts]


def test_coalesce_false_lets_every_request_call_the_upstream(
    gateway: Gateway, up: HeldUpstream
) -> None:
    prompt, n = fresh(), 3

    async def run() -> list[tuple[str, str]]:
        async with sdk(gateway) as client:
            answers = [asyncio.create_task(ask(client, prompt, "alone")) for _ in range(n)]
            # Every call is held at the upstream (none is answered, so none stored,
            # before all have looked): each one reaches it, none waits on another.
            await until(lambda: up.calls[prompt] == n, "every request at the upstream")
            assert (len(gateway.flights), gateway.flights.waiting) == (0, 0)
            up.gate.set()
            return await asyncio.gather(*answers)

    assert asyncio.run(run()) == [(f"echo: {prompt}", "miss")] * n
    assert up.calls[prompt] == n


def test_stream_followers_get_the_leaders_stream_replayed(
    gateway: Gateway, up: HeldUpstream
) -> None:
    prompt, n = fresh(), 5

    answers = burst(gateway, up, n, lambda client: ask_stream(client, prompt))
    assert up.calls[prompt] == 1
    assert {text for text, _ in answers} == {f"echo: {prompt}"}
    assert sorted(outcome for _, outcome in answers) == ["coalesced"] * (n - 1) + ["miss"]


def test_followers_of_a_cut_stream_call_the_upstream_themselves(
    gateway: Gateway, up: HeldUpstream
) -> None:
    prompt, n = fresh(), 4

    answers = burst(gateway, up, n, lambda client: ask_stream(client, prompt, "cutting"))
    # The leader's stream ends with an error event (the SDK raises it); nothing stored.
    assert len([a for a in answers if isinstance(a, Exception)]) == 1
    served = [a for a in answers if not isinstance(a, Exception)]
    assert served == [(f"echo: {prompt}", "miss")] * (n - 1)
    assert up.calls[prompt] == n
    assert len(gateway.flights) == 0


def test_a_stream_and_a_whole_answer_do_not_share_a_flight(
    gateway: Gateway, up: HeldUpstream
) -> None:
    prompt = fresh()

    async def run() -> list[tuple[str, str]]:
        async with sdk(gateway) as client:
            whole = asyncio.create_task(ask(client, prompt))
            streamed = asyncio.create_task(ask_stream(client, prompt))
            await until(lambda: up.calls[prompt] == 2, "both calls at the upstream")
            up.gate.set()
            return [await whole, await streamed]

    assert asyncio.run(run()) == [(f"echo: {prompt}", "miss")] * 2


def test_the_log_line_and_header_of_a_coalesced_request(
    gateway: Gateway, up: HeldUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    prompt = fresh()

    async def pair() -> list[Any]:
        async with sdk(gateway) as client:

            async def raw() -> Any:
                return await client.chat.completions.with_raw_response.create(
                    model="auto", messages=[{"role": "user", "content": prompt}]
                )

            first = asyncio.create_task(raw())
            await until(lambda: up.calls[prompt] == 1, "the leader's call in flight")
            second = asyncio.create_task(raw())
            await until(lambda: gateway.flights.waiting == 1, "the follower waiting")
            up.gate.set()
            return [await first, await second]

    leader, follower = asyncio.run(pair())
    assert follower.headers["x-router-cache"] == "coalesced"
    assert follower.headers["x-router-model"] == "held"
    line = log_line(caplog, follower.headers["x-request-id"])
    assert (line["cache"], line["cost_usd"], line["attempts"]) == ("coalesced", 0, None)
    assert line["prompt_tokens"] == PROMPT_TOKENS
    assert log_line(caplog, leader.headers["x-request-id"])["cache"] == "miss"


def test_coalesce_config_defaults_and_errors() -> None:
    config = DecisionCacheConfig(mode="exact")
    assert (config.coalesce, config.coalesce_wait) == (True, 30.0)
    bad = """\
providers: {mock: {type: mock}}
models: {m: {provider: mock}}
decisions:
  - {name: faq, when: true, route: {candidates: [m]}, cache: {mode: exact, coalesce_wait: 0}}
"""
    with pytest.raises(ConfigError, match=r"decisions\[0\]\.cache\.coalesce_wait"):
        load_config_text(bad, env={})


def test_coalesce_wait_is_cut_to_the_models_total_timeout() -> None:
    text = """\
providers: {mock: {type: mock}}
models: {m: {provider: mock, timeouts: {total: 5}}}
decisions:
  - {name: faq, when: true, route: {candidates: [m]}, cache: {mode: exact}}
  - {name: solo, when: false, route: {candidates: [m]}, cache: {mode: exact, coalesce: false}}
"""
    config, _ = load_config_text(text, env={})
    policies = decision_policies(config)
    assert policies["faq"].coalesce_wait == 5.0
    assert policies["solo"].coalesce_wait is None


def test_flights_lead_follow_settle_and_expire() -> None:
    slot = Slot("client", "faq", "digest")
    answer = CachedAnswer("whole", b"{}", "held", None)

    async def run() -> None:
        flights = Flights()
        flight, leads = flights.join(slot, 30.0)
        again, follows = flights.join(slot, 30.0)
        assert (leads, follows, again is flight, flights.joined(slot)) == (
            True,
            False,
            True,
            flight,
        )
        waiting = asyncio.create_task(flights.follow(flight))
        await until(lambda: flights.waiting == 1, "the follower waiting")
        flights.settle(flight, answer)
        assert await waiting is answer
        assert (len(flights), flights.waiting, flights.joined(slot)) == (0, 0, None)
        flights.settle(flight, None)  # a second settle changes nothing
        assert flight.answer.result() is answer
        # A flight past its deadline is followed by nobody, and the next request leads.
        stale, _ = flights.join(slot, 1e-9)
        await until(lambda: flights.joined(slot) is None, "the flight's deadline passed")
        assert await flights.follow(stale) is None
        fresh_flight, leads = flights.join(slot, 30.0)
        assert leads
        assert fresh_flight is not stale
        flights.settle(stale, None)  # the stale leader ends: the new flight stays
        assert flights.joined(slot) is fresh_flight

    asyncio.run(run())
