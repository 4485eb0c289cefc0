"""Session affinity (issue 16 item 1): a conversation keeps its model across turns. Units
(the store, session ids) first; then a real gateway in front of real upstreams (two
OpenAI-compatible servers and an Anthropic-format one) driven by the OpenAI SDK; then two
gateway processes on one real Redis."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from router_proxy.engine.affinity import header_session, prefix_session
from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.protocol import ChatMessage
from router_proxy.resilience.sessions import Binding, SessionMemory
from tests.conftest import GatewayFactory
from tests.support.gateway_process import GatewayProcess, start_all
from tests.support.logs import log_line
from tests.support.redis_server import RedisServer, require_redis_server
from tests.support.upstream import FakeUpstream

# --- units -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bindings_expire_ttl_seconds_after_their_last_use() -> None:
    clock = Clock()
    memory = SessionMemory(ttl=10, max_sessions=10, clock=clock)
    memory.put("s", Binding("a", "d"))
    clock.now += 8
    assert memory.get("s") == Binding("a", "d")  # used: lives 10 s more
    clock.now += 8
    assert memory.get("s") == Binding("a", "d")
    clock.now += 11
    assert memory.get("s") is None


def test_memory_holds_at_most_max_sessions_dropping_the_least_recently_used() -> None:
    memory = SessionMemory(ttl=100, max_sessions=2)
    memory.put("a", Binding("m", "d"))
    memory.put("b", Binding("m", "d"))
    memory.get("a")
    memory.put("c", Binding("m", "d"))
    assert (memory.get("a"), memory.get("b"), len(memory)) == (Binding("m", "d"), None, 2)


def test_a_binding_survives_its_encoding() -> None:
    assert Binding.decode(Binding("Qwen/Qwen2.5:7b", "coding").encode()) == Binding(
        "Qwen/Qwen2.5:7b", "coding"
    )
    assert Binding.decode(b"garbage") is None


def messages(*turns: tuple[str, str]) -> list[ChatMessage]:
    return [ChatMessage(role=role, content=text) for role, text in turns]  # type: ignore[arg-type]


def test_the_prefix_names_a_conversation_whatever_came_after_it() -> None:
    first = messages(("system", "be brief"), ("user", "plan a trip"))
    later = first + messages(("assistant", "where to?"), ("user", "Rome"))
    assert prefix_session(first) == prefix_session(later)
    assert prefix_session(first).startswith("p-")
    assert prefix_session(first) != prefix_session(
        messages(("system", "be long"), ("user", "plan a trip"))
    )
    assert prefix_session(first) != prefix_session(messages(("user", "plan a trip")))


def test_a_client_session_id_is_kept_unless_it_is_odd() -> None:
    assert header_session(" conv-42 ") == "conv-42"
    assert header_session("") is None
    assert header_session("x" * 500).startswith("h-")  # type: ignore[union-attr]
    assert header_session("caf\u00e9").startswith("h-")  # type: ignore[union-attr]


# --- through a real gateway --------------------------------------------------------------

POLICY = """\
providers:
  one: {{type: openai, base_url: "${{UPSTREAM}}/v1"}}
  two: {{type: openai, base_url: "{second}/v1"}}
  ant: {{type: anthropic, base_url: "${{UPSTREAM}}", api_key: k}}
models:
  gpt-a: {{provider: one, upstream_model: a-echo}}
  gpt-b: {{provider: two, upstream_model: b-echo}}
  claude: {{provider: ant, upstream_model: claude-echo}}
  flaky: {{provider: one, upstream_model: script-affinity-flaky}}
  small-8k: {{provider: one, upstream_model: small-echo, context_window: 8192}}
  lim: {{provider: one, upstream_model: lim-echo}}
affinity: {{enabled: true}}
limits: {{per_model: {{lim: {{requests_per_minute: 1}}}}}}
resilience:
  breaker: {{failures: 1, window: 60, cooldown: 60}}
  retries: {{attempts_per_model: 1}}
signals:
  - {{name: code, type: keyword, any: [python]}}
  - {{name: poem, type: keyword, any: [poem]}}
decisions:
  - name: coding
    priority: 10
    when: code
    affinity: decision
    route: {{candidates: [claude, gpt-a]}}
  - {{name: poems, priority: 5, when: poem, route: {{candidates: [claude, gpt-a, gpt-b]}}}}
  - {{name: flaky-first, when: false, route: {{candidates: [flaky, gpt-b]}}}}
  - {{name: limited-first, when: false, route: {{candidates: [lim, gpt-a]}}}}
  - {{name: sized, when: false, route: {{candidates: [small-8k, gpt-b]}}}}
  - name: stateless
    when: false
    affinity: off
    route: {{candidates: [gpt-a, gpt-b, claude], algorithm: weighted}}
  - {{name: default, when: true, route: {{candidates: [gpt-a, gpt-b, claude], algorithm: weighted}}}}
"""
SYSTEM = {"role": "system", "content": "You are terse."}


@pytest.fixture(scope="module")
def second() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(make_gateway: GatewayFactory, second: FakeUpstream) -> str:
    return make_gateway(POLICY.format(second=second.base_url))


@pytest.fixture
def sdk(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)


class Conversation:
    """A client that keeps its history and sends it whole each turn, as chat clients do."""

    def __init__(self, sdk: openai.OpenAI, model: str, opening: str, **headers: str) -> None:
        self.sdk, self.model, self.headers = sdk, model, headers
        self.messages: list[Any] = [SYSTEM]
        self.opening = opening
        self.turns: list[dict[str, str]] = []  # each turn's x-router-* headers

    def say(self, text: str | None = None) -> dict[str, str]:
        text = text or f"{self.opening} (turn {len(self.turns) + 1})"
        if not self.turns:
            text = self.opening
        self.messages.append({"role": "user", "content": text})
        raw = self.sdk.chat.completions.with_raw_response.create(
            model=self.model, messages=self.messages, extra_headers=self.headers
        )
        answer = raw.parse().choices[0].message.content
        self.messages.append({"role": "assistant", "content": answer})
        headers = {k: v for k, v in raw.headers.items() if k.startswith("x-router-")}
        self.turns.append(headers)
        return headers

    @property
    def models(self) -> list[str]:
        return [t["x-router-model"] for t in self.turns]


def test_a_ten_turn_conversation_stays_on_one_model(sdk: openai.OpenAI) -> None:
    talk = Conversation(sdk, "auto", "tell me about the sea, ten times")
    for _ in range(10):
        talk.say()
    assert len(set(talk.models)) == 1, talk.models
    assert [t["x-router-affinity"] for t in talk.turns] == ["miss"] + ["hit"] * 9
    sessions = {t["x-router-session"] for t in talk.turns}
    assert len(sessions) == 1
    assert sessions.pop().startswith("p-")


def test_without_affinity_the_same_conversation_hops(sdk: openai.OpenAI) -> None:
    talk = Conversation(sdk, "stateless", "tell me about the sea, ten times")
    for _ in range(10):
        talk.say()
    assert len(set(talk.models)) > 1  # all ten alike by chance: 3 x (1/3)^10
    assert all("x-router-affinity" not in t for t in talk.turns)


def test_a_client_session_header_names_the_conversation(sdk: openai.OpenAI) -> None:
    talk = Conversation(sdk, "auto", "hello", **{"x-session-id": "conv-42"})
    talk.say()
    talk.say("and now?")
    assert [t["x-router-session"] for t in talk.turns] == ["conv-42", "conv-42"]
    assert [t["x-router-affinity"] for t in talk.turns] == ["miss", "hit"]


def test_a_new_decision_rebinds_the_conversation(
    sdk: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    talk = Conversation(sdk, "auto", "chat with me about cats")
    talk.say()
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        turn = talk.say("now write python for it")
        line = log_line(caplog, turn["x-router-request-id"])
    assert (turn["x-router-decision"], turn["x-router-model"]) == ("coding", "claude")
    assert turn["x-router-affinity"] == "rebound"
    assert (line["affinity"], line["rebound"]) == ("rebound", "decision_changed")
    assert line["session"] == turn["x-router-session"]
    assert talk.say("more python")["x-router-affinity"] == "hit"


def test_a_decision_keeps_a_model_another_bound_if_it_is_a_candidate(sdk: openai.OpenAI) -> None:
    talk = Conversation(sdk, "auto", "let us talk about rivers")
    first = talk.say()
    turn = talk.say("now a poem about them")
    assert turn["x-router-decision"] == "poems"
    assert (turn["x-router-model"], turn["x-router-affinity"]) == (first["x-router-model"], "hit")


def test_an_open_breaker_rebinds_and_the_new_model_keeps_it(
    sdk: openai.OpenAI, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    talk = Conversation(sdk, "flaky-first", "a conversation that moves")
    assert talk.say()["x-router-model"] == "flaky"
    upstream.scripts["affinity-flaky"].append("fail-500")
    with pytest.raises(openai.APIStatusError):  # opens flaky's breaker (one failure)
        sdk.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "x"}])
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        turn = talk.say()
        line = log_line(caplog, turn["x-router-request-id"])
    assert (turn["x-router-model"], turn["x-router-affinity"]) == ("gpt-b", "rebound")
    assert line["rebound"] == "breaker_open"
    assert line["skipped"] == [["flaky", "breaker_open"]]
    assert line["switch"] == {"from": "flaky", "reason": "breaker_open", "changed": None}
    again = talk.say()
    assert (again["x-router-model"], again["x-router-affinity"]) == ("gpt-b", "hit")


def test_a_bound_model_over_its_limit_is_passed_over_and_the_next_one_bound(
    sdk: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    talk = Conversation(sdk, "limited-first", "limits apply to bound models too")
    assert talk.say()["x-router-model"] == "lim"  # its one request this minute
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        turn = talk.say()
        line = log_line(caplog, turn["x-router-request-id"])
    assert (turn["x-router-model"], turn["x-router-affinity"]) == ("gpt-a", "rebound")
    assert line["rebound"] == "rate_limited"


def test_a_conversation_outgrowing_its_models_window_is_rebound(sdk: openai.OpenAI) -> None:
    talk = Conversation(sdk, "sized", "short start")
    assert talk.say()["x-router-model"] == "small-8k"
    turn = talk.say("now a long one:" + " word" * 9000)
    assert (turn["x-router-model"], turn["x-router-affinity"]) == ("gpt-b", "rebound")


def test_affinity_shows_in_metrics(gateway: str, sdk: openai.OpenAI) -> None:
    talk = Conversation(sdk, "auto", "count me in the metrics")
    talk.say()
    talk.say()
    text = httpx.get(gateway + "/metrics").text
    assert 'router_affinity_total{decision="default",result="hit"}' in text
    assert 'router_affinity_total{decision="default",result="miss"}' in text
    assert 'router_affinity_rebound_total{decision="coding",reason="decision_changed"}' in text
    # A hit on a model that was not the selector's first choice is no fallback.
    assert 'router_fallbacks_total{decision="default"}' not in text


# --- two replicas, one Redis -------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(require_redis_server()) as server:
        yield server


def test_two_replicas_on_one_redis_keep_the_binding(
    upstream: FakeUpstream, second: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    text = (
        POLICY.format(second=second.base_url).replace("${UPSTREAM}", upstream.base_url)
        + f'state: {{backend: redis, url: "{redis_server.url}", key_prefix: aff}}\n'
    )
    a, b = GatewayProcess(text, tmp_path, "a"), GatewayProcess(text, tmp_path, "b")
    start_all(a, b)
    try:
        replicas = [a, b]
        history: list[Any] = [SYSTEM]
        seen: list[tuple[str, str]] = []
        for turn in range(8):  # a, b, a, b, ...: every other turn on the other replica
            history.append({"role": "user", "content": f"the shared sea, turn {turn}"})
            body = {"model": "auto", "messages": history}
            url = replicas[turn % 2].base_url + "/v1/chat/completions"
            answer = httpx.post(url, json=body, timeout=10)
            assert answer.status_code == 200, answer.text
            history.append(answer.json()["choices"][0]["message"])
            seen.append((answer.headers["x-router-model"], answer.headers["x-router-affinity"]))
    finally:
        a.stop()
        b.stop()
    assert len({model for model, _ in seen}) == 1, seen
    assert [verdict for _, verdict in seen] == ["miss"] + ["hit"] * 7
    keys = redis_server.client().keys("aff:session:*")
    assert len(keys) == 1, "the binding lives in Redis"
    assert redis_server.client().ttl(keys[0]) > 3000  # affinity.ttl: 3600 by default
