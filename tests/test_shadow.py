"""Shadow sampling (engine/shadow.py): the sampler's rules with a scripted upstream, and the
gateway end to end (real loopback upstream, the official SDK as client): the client's
answer is complete while a shadow call is still blocked upstream, errors never reach it,
shutdown cancels what is in flight."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import openai
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.config.schema import ModelConfig
from router_proxy.config.shadow import ShadowConfig
from router_proxy.context import Preferences, RequestContext
from router_proxy.engine.shadow import ShadowSampler
from router_proxy.engine.upstream import Outgoing
from router_proxy.errors import UpstreamError
from router_proxy.observability.metrics import Metrics
from router_proxy.protocol import Usage
from router_proxy.providers.base import Completion
from router_proxy.server.app import create_app
from router_proxy.server.http import protocol_options
from tests.support.serving import ServerThread
from tests.support.upstream import FakeUpstream


class ListSink:
    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []

    def write(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))


class ScriptedUpstream:
    """``Upstream.complete`` by model: blocks on ``gate`` for models in ``blocked``, raises
    for ``failing``, else answers "answer of MODEL" with 1000 + 1000 tokens."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.blocked: set[str] = set()
        self.failing: dict[str, Exception] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def complete(
        self, out: Outgoing, model: str, left: float | None, request_id: str
    ) -> Completion:
        self.calls.append((model, out.body))
        if model in self.blocked:
            await self.gate.wait()
        if model in self.failing:
            raise self.failing[model]
        body = b'{"choices": [{"message": {"role": "assistant", "content": "answer of %s"}}]}'
        return Completion(body % model.encode(), Usage(prompt_tokens=1000, completion_tokens=1000))


MODELS = {
    m: ModelConfig(provider="p", cost={"input_per_mtok": 1.0, "output_per_mtok": 1.0})
    for m in ("a", "b", "c", "d")
}  # 1000 + 1000 tokens cost $0.002


def sampler(
    upstream: ScriptedUpstream, draws: list[float] | None = None, **policy: Any
) -> tuple[ShadowSampler, ListSink, Metrics]:
    config = ShadowConfig(**({"share": 0.5, "budget_usd_per_day": 1.0} | policy))
    metrics, sink = Metrics(), ListSink()
    values = iter(draws or [])
    shadow = ShadowSampler(
        {"d1": config},
        {"d1": ("a", "b", "c", "d")},
        upstream,  # type: ignore[arg-type]
        MODELS,
        metrics,
        sink=sink,
        draw=lambda: next(values, 0.0),
    )
    return shadow, sink, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def body(prompt: str = "hi", stream: bool = False) -> Outgoing:
    return Outgoing(
        {"model": "a", "messages": [{"role": "user", "content": prompt}], "stream": stream}
    )


async def settle(shadow: ShadowSampler) -> None:
    while shadow.in_flight:  # noqa: ASYNC110 - the sampler keeps no event for tests
        await asyncio.sleep(0)


def test_share_draws_requests_and_the_answering_model_is_not_called_again() -> None:
    async def run() -> None:
        up = ScriptedUpstream()
        shadow, sink, _ = sampler(up, draws=[0.7, 0.2], share=0.5)
        ctx = RequestContext.from_prompt("hi", request_id="r1")
        assert shadow.draw("d1", ctx, body()) is None  # 0.7 >= share
        assert shadow.draw("other", ctx, body()) is None  # the decision does not shadow
        job = shadow.draw("d1", ctx, body(stream=True))
        assert job is not None
        assert "stream" not in job.body
        shadow.start(job, answered_by="a")
        await settle(shadow)
        assert sorted(m for m, _ in up.calls) == ["b", "c", "d"]
        assert {r["model"] for r in sink.records} == {"b", "c", "d"}
        record = sink.records[0]
        assert record["kind"] == "shadow"
        assert record["request_id"] == "r1"
        assert record["answer"] == f"answer of {record['model']}"
        assert record["cost_usd"] == pytest.approx(0.002)
        assert record["status"] == 200
        assert record["usage"] == {"prompt_tokens": 1000, "completion_tokens": 1000}

    asyncio.run(run())


def test_configured_models_replace_the_candidates() -> None:
    async def run() -> None:
        up = ScriptedUpstream()
        shadow, _, _ = sampler(up, models=["d"])
        job = shadow.draw("d1", RequestContext.from_prompt("hi"), body())
        assert job is not None
        shadow.start(job, answered_by="a")
        await settle(shadow)
        assert [m for m, _ in up.calls] == ["d"]

    asyncio.run(run())


def test_a_callers_excluded_models_are_never_shadowed() -> None:
    async def run() -> None:
        up = ScriptedUpstream()
        shadow, _, _ = sampler(up)
        ctx = RequestContext.from_prompt("hi")
        ctx.preferences = Preferences(excluded=("c",))
        job = shadow.draw("d1", ctx, body())
        assert job is not None
        assert job.models == ("a", "b", "d")
        ctx.preferences = Preferences(allowed=("a",))
        job = shadow.draw("d1", ctx, body())
        assert job is not None
        assert job.models == ("a",)
        shadow.start(job, answered_by="a")  # only `a` allowed, and it answered: no call
        await settle(shadow)
        assert up.calls == []

    asyncio.run(run())


def test_budget_stops_shadow_calls_for_the_day() -> None:
    async def run() -> None:
        up = ScriptedUpstream()
        # Each call costs $0.002: the budget is spent after three calls.
        shadow, sink, metrics = sampler(up, budget_usd_per_day=0.005, models=["b"])
        for i in range(6):
            job = shadow.draw("d1", RequestContext.from_prompt("hi", request_id=str(i)), body())
            assert job is not None
            shadow.start(job, answered_by="a")
            await settle(shadow)
        assert len(sink.records) == 3
        assert sample(metrics, "router_shadow_dropped_total", decision="d1", reason="budget") == 3
        assert sample(metrics, "router_shadow_spend_dollars_total", decision="d1") == (
            pytest.approx(0.006)
        )
        shadow.spend.day -= 1  # the next UTC day: the budget is back
        job = shadow.draw("d1", RequestContext.from_prompt("hi"), body())
        assert job is not None
        shadow.start(job, answered_by="a")
        await settle(shadow)
        assert len(sink.records) == 4

    asyncio.run(run())


def test_concurrency_bound_drops_and_counts_and_close_cancels() -> None:
    async def run() -> None:
        up = ScriptedUpstream()
        up.blocked = {"b", "c", "d"}
        shadow, sink, metrics = sampler(up, max_concurrent=2)
        job = shadow.draw("d1", RequestContext.from_prompt("hi"), body())
        assert job is not None
        shadow.start(job, answered_by="a")
        await asyncio.sleep(0)
        assert shadow.in_flight == 2
        assert sample(metrics, "router_shadow_dropped_total", decision="d1", reason="full") == 1
        await shadow.aclose()
        assert shadow.in_flight == 0
        assert not sink.records
        shadow.start(job, answered_by="a")  # closed (an answer sent after a reload)
        assert shadow.in_flight == 0
        assert (
            sample(metrics, "router_shadow_dropped_total", decision="d1", reason="cancelled") == 5
        )

    asyncio.run(run())


def test_errors_are_recorded_and_counted_never_raised() -> None:
    async def run() -> None:
        up = ScriptedUpstream()
        up.failing = {"b": UpstreamError("down"), "c": RuntimeError("a provider's bug")}
        shadow, sink, metrics = sampler(up)
        job = shadow.draw("d1", RequestContext.from_prompt("hi"), body())
        assert job is not None
        shadow.start(job, answered_by="a")
        await settle(shadow)
        by_model = {r["model"]: r for r in sink.records}
        assert by_model["b"]["status"] == 502
        assert by_model["b"]["answer"] is None
        assert by_model["c"]["status"] == 500
        assert by_model["c"]["error"] == "internal"
        assert by_model["d"]["status"] == 200
        errors = sample(
            metrics, "router_shadow_calls_total", decision="d1", model="b", outcome="error"
        )
        assert errors == 1

    asyncio.run(run())


# --- the gateway end to end -------------------------------------------------------------

POLICY = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1", api_key: k}
models:
  served: {provider: up, upstream_model: echo}
  blocked: {provider: up, upstream_model: hang, timeouts: {total: 60}}
  broken: {provider: up, upstream_model: fail-500}
decisions:
  - name: default
    when: true
    route: {candidates: [served, blocked, broken]}
    shadow: {share: 1.0, budget_usd_per_day: 10, max_concurrent: 4}
records: {sink: {type: jsonl, path: "${RECORDS}"}, sample_rate: 0, content: true, flush_seconds: 0.05}
"""


class TeeSink(ListSink):
    """Keeps what the shadow sampler writes, and passes it on to the records' sink."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def write(self, record: Mapping[str, Any]) -> None:
        super().write(record)
        self.inner.write(record)


@pytest.fixture
def records_file(tmp_path: Path) -> Path:
    return tmp_path / "records.jsonl"


@pytest.fixture
def gateway(
    upstream: FakeUpstream, records_file: Path
) -> Iterator[tuple[ServerThread, ShadowSampler, ListSink]]:
    env = {"UPSTREAM": upstream.base_url, "RECORDS": str(records_file)}
    config, _ = load_config_text(POLICY, env=env)
    app = create_app(config)
    shadow = app.state.slot.current.engine.shadow
    assert shadow is not None
    assert shadow.sink is not None  # the records' sink
    shadow.sink = TeeSink(shadow.sink)
    server = ServerThread(app, **protocol_options(config.server))
    server.start()
    try:
        yield server, shadow, shadow.sink
    finally:
        server.stop()


def wait_for(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_client_answer_is_complete_while_a_shadow_call_is_blocked(
    gateway: tuple[ServerThread, ShadowSampler, ListSink], upstream: FakeUpstream
) -> None:
    server, shadow, sink = gateway
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hello there"}]
    )
    # The answer is the served model's, unchanged, and it is whole while the shadow call
    # to `blocked` (an upstream that hangs) has not answered.
    assert reply.choices[0].message.content == "echo: hello there"
    wait_for(lambda: any(r["model"] == "broken" for r in sink.records))
    assert shadow.in_flight == 1  # `blocked`, still waiting upstream
    broken = next(r for r in sink.records if r["model"] == "broken")
    assert broken["status"] == 502
    assert broken["error"] is not None
    # Streams too: the client reads the whole stream; its shadow calls come after.
    chunks = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "a stream"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: a stream"
    wait_for(lambda: sum(r["model"] == "broken" for r in sink.records) == 2)
    assert shadow.in_flight == 2
    server.stop()  # shutdown cancels the blocked shadow calls
    assert shadow.in_flight == 0
    assert not any(r["model"] == "blocked" for r in sink.records)
    registry = shadow.metrics.registry
    labels = {"decision": "default", "reason": "cancelled"}
    assert registry.get_sample_value("router_shadow_dropped_total", labels) == 2


def test_a_shadowed_request_is_recorded_with_its_prompt_beside_its_shadow_answers(
    gateway: tuple[ServerThread, ShadowSampler, ListSink], records_file: Path
) -> None:
    # sample_rate 0: no request is drawn for records, yet a shadowed one is kept whole,
    # so `train --records` can join its shadow answers to a prompt.
    server, _, sink = gateway
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    wait_for(lambda: any(r["model"] == "broken" for r in sink.records))
    server.stop()  # flushes the records' sink
    written = [json.loads(line) for line in records_file.read_text().splitlines()]
    served = [r for r in written if r["kind"] == "served"]
    shadows = [r for r in written if r["kind"] == "shadow"]
    assert len(served) == 1
    assert (served[0]["prompt"], served[0]["model"]) == ("hi", "served")
    assert [r["model"] for r in shadows] == ["broken"]
    assert shadows[0]["request_id"] == served[0]["request_id"]


def test_a_reload_carries_the_days_spend() -> None:
    from router_proxy.engine.upstream import Upstream
    from router_proxy.providers.registry import build_provider

    policy = POLICY.replace("${UPSTREAM}", "http://127.0.0.1:9").replace("${RECORDS}", "r.jsonl")
    config, _ = load_config_text(policy)
    metrics = Metrics()
    providers = {name: build_provider(name, p) for name, p in config.providers.items()}
    upstream = Upstream(config.models, providers)
    sink = ListSink()
    first = ShadowSampler.build(config, upstream, metrics, sink=sink)
    assert first is not None
    first.spend.today(time.time())["default"] = 3.0
    second = ShadowSampler.build(config, upstream, metrics, previous=first, sink=sink)
    assert second is not None
    assert second.sink is sink
    assert second.spend.today(time.time())["default"] == 3.0
    unshadowed, _ = load_config_text(policy.replace("    shadow:", "    # shadow:"))
    assert ShadowSampler.build(unshadowed, upstream, metrics, previous=second) is None


def test_shadow_sampling_without_recorded_content_is_refused_at_load() -> None:
    policy = POLICY.replace("${UPSTREAM}", "http://127.0.0.1:9")
    without_records = policy.split("records:")[0]
    with pytest.raises(ConfigError, match=r"decisions\[0\]\.shadow: shadow sampling needs"):
        load_config_text(without_records)
    without_content = policy.replace("${RECORDS}", "r.jsonl").replace(
        "content: true", "content: false"
    )
    with pytest.raises(ConfigError, match=r"records\.decisions\.default\.content: true"):
        load_config_text(without_content)
