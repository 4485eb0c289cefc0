"""The rule-based selectors: static, weighted, cheapest, latency."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.pipeline import Pipeline
from router_proxy.resilience.latency_tracker import LatencyTracker

POLICY = """\
providers:
  mock: {{type: mock}}
models:
  pricey: {{provider: mock, cost: {{input_per_mtok: 10, output_per_mtok: 30}}}}
  mid: {{provider: mock, cost: {{input_per_mtok: 1, output_per_mtok: 2}}}}
  cheap-in: {{provider: mock, cost: {{input_per_mtok: 0.1, output_per_mtok: 8}}}}
decisions:
  - name: default
    when: true
    route: {{candidates: [pricey, mid, cheap-in], algorithm: {algorithm}, params: {params}}}
"""


def pipeline(algorithm: str, params: str = "{}") -> Pipeline:
    config, _ = load_config_text(POLICY.format(algorithm=algorithm, params=params), env={})
    return Pipeline.build(config)


def candidates(p: Pipeline, prompt: str = "hi") -> tuple[str, ...]:
    return asyncio.run(p.route(RequestContext.from_prompt(prompt))).candidates


def test_static_keeps_yaml_order() -> None:
    assert candidates(pipeline("static")) == ("pricey", "mid", "cheap-in")


def test_weighted_draws_by_weight_and_orders_all_candidates() -> None:
    p = pipeline("weighted", "{weights: {pricey: 1, mid: 3, cheap-in: 0}, seed: 7}")
    firsts = Counter(candidates(p)[0] for _ in range(2000))
    assert set(firsts) == {"pricey", "mid"}  # weight 0 is never first
    assert 0.70 < firsts["mid"] / 2000 < 0.80  # 3:1
    assert all(sorted(candidates(p)) == ["cheap-in", "mid", "pricey"] for _ in range(20))


def test_weighted_refuses_unknown_or_all_zero_weights() -> None:
    with pytest.raises(ConfigError, match="'gpt5' is not a candidate"):
        pipeline("weighted", "{weights: {gpt5: 1}}")
    with pytest.raises(ConfigError, match="positive weight"):
        pipeline("weighted", "{weights: {pricey: 0, mid: 0, cheap-in: 0}}")


def test_cheapest_estimates_this_request() -> None:
    p = pipeline("cheapest", "{expected_output_tokens: 10}")
    # A long prompt: the input price dominates, cheap-in wins.
    assert candidates(p, "word " * 4000) == ("cheap-in", "mid", "pricey")
    # A short prompt with a long answer: the output price dominates, mid wins.
    p = pipeline("cheapest", "{expected_output_tokens: 2000}")
    assert candidates(p, "hi")[0] == "mid"


def test_latency_prefers_unmeasured_then_fastest() -> None:
    p = pipeline("latency")
    selector = p.decisions[0].selector
    tracker: LatencyTracker = selector.tracker  # type: ignore[attr-defined]
    tracker.observe("pricey", 0.2, now=0)
    tracker.observe("mid", 0.9, now=0)
    assert candidates(p) == ("cheap-in", "pricey", "mid")  # cheap-in not measured yet
    tracker.observe("cheap-in", 0.5, now=0)
    assert candidates(p) == ("pricey", "cheap-in", "mid")
    for t in range(1, 30):  # pricey slows down; the decayed average follows
        tracker.observe("pricey", 2.0, now=t)
    assert candidates(p) == ("cheap-in", "mid", "pricey")


def test_latency_average_decays_with_time() -> None:
    tracker = LatencyTracker(half_life_s=10)
    tracker.observe("m", 1.0, now=0)
    tracker.observe("m", 3.0, now=10)  # one half-life later: old and new weigh the same
    assert tracker.average("m") == pytest.approx(2.0)
    tracker.observe("m", 3.0, now=10)  # same instant: the new value still counts 10%
    assert tracker.average("m") == pytest.approx(2.1)


def test_served_calls_feed_the_latency_statistics() -> None:
    import httpx

    from router_proxy.server.app import create_app
    from tests.support.serving import ServerThread

    text = POLICY.format(algorithm="latency", params="{}").replace(
        "  mock: {type: mock}", "  mock: {type: mock, latency_ms: 30}"
    )
    config, _ = load_config_text(text, env={})
    app = create_app(config)
    with ServerThread(app) as server, httpx.Client(base_url=server.base_url) as client:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        began = time.perf_counter()
        first = [client.post("/v1/chat/completions", json=body).headers["x-router-model"]]
        waited = time.perf_counter() - began
        first += [client.post("/v1/chat/completions", json=body).headers["x-router-model"]]
        tracker = app.state.slot.current.resources.latency
        # Unmeasured models are tried first, and every answered call is measured.
        assert first == ["pricey", "mid"]
        # Measured inside the request the client waited for. Not ">= the mock's 30 ms":
        # uvloop arms a timer from the time it cached when its loop iteration began, so on
        # a busy machine a 30 ms sleep can end after 29.6 ms (seen in CI).
        pricey = tracker.average("pricey")
        assert pricey is not None
        assert 0 < pricey <= waited
        assert tracker.average("mid") is not None
        assert tracker.average("cheap-in") is None
