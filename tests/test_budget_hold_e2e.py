"""End to end: the official OpenAI SDK -> ``router-proxy serve`` (its own process, a real
port, watching its policy file) holding a trained cascade's budget on skewed traffic ->
a real upstream whose models have known skills. Then the policy file is edited in place,
as a mounted ConfigMap is: an edit that leaves the decision alone keeps what the hold
learned; one that changes its budget starts it afresh."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.skilled_upstream import SkilledUpstream
from tests.test_budget_hold_serving import BUDGET, policy, traffic
from tests.test_cascade_artifact_serving import artifact

__all__ = ["artifact"]  # the trained artifact fixture, shared

HOLD = "{window: 100, min_requests: 50}"
REQUESTS = 200
RELOAD_SECONDS = 20.0  # a bound on waiting for the file watcher, not a timing assertion


@pytest.fixture
def gateway(
    artifact: Path, skilled: SkilledUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GatewayProcess]:
    monkeypatch.setenv("UPSTREAM", skilled.base_url)  # the process reads ${UPSTREAM}
    process = GatewayProcess(policy(artifact, HOLD), tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def hold_of(gateway: GatewayProcess) -> dict[str, Any]:
    body = {"model": "auto", "messages": [{"role": "user", "content": "What is 1 plus 2?"}]}
    answer = httpx.post(gateway.base_url + "/v1/route", json=body, timeout=10)
    shown: dict[str, Any] = answer.json()["calls"]["hold"]
    return shown


def gauge(gateway: GatewayProcess) -> float:
    text = httpx.get(gateway.base_url + "/metrics", timeout=10).text
    found = re.search(
        r'^router_multicall_effective_budget_per_1k\{decision="learned"\} (\S+)$', text, re.M
    )
    assert found is not None, "no effective-budget gauge"
    return float(found.group(1))


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RELOAD_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def test_serve_holds_the_budget_and_a_reload_keeps_or_resets_it(
    gateway: GatewayProcess,
) -> None:
    sdk = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused", max_retries=0)
    for prompt in traffic(REQUESTS, seed=3):
        sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": prompt}])
    # The hold is told a request's cost after its answer has gone: wait for the last one.
    until(lambda: hold_of(gateway)["requests"] == REQUESTS, "every request counted")
    learned = hold_of(gateway)
    # Costlier traffic than planned: the effective knob came down, within its bounds.
    assert BUDGET / 4 <= learned["effective_per_1k"] < 0.9 * BUDGET
    assert gauge(gateway) == pytest.approx(learned["effective_per_1k"], rel=1e-3)

    # A ConfigMap edit elsewhere in the file: the decision, its params and its artifact's
    # plans are unchanged, so the hold keeps what it learned.
    text = gateway.config.read_text()
    edited = text.replace("models:\n", "models:\n  spare: {provider: up}\n", 1)
    gateway.config.write_text(edited)
    until(
        lambda: any(
            m["id"] == "spare"
            for m in httpx.get(gateway.base_url + "/v1/models", timeout=10).json()["data"]
        ),
        "the edit reloaded",
    )
    kept = hold_of(gateway)
    assert (kept["requests"], kept["correction"]) == (REQUESTS, learned["correction"])

    # A new budget is a new hold: it starts from the knob as written.
    gateway.config.write_text(edited.replace(f"budget_per_1k: {BUDGET}", "budget_per_1k: 2.0"))
    until(lambda: hold_of(gateway)["budget_per_1k"] == 2.0, "the budget edit reloaded")
    fresh = hold_of(gateway)
    assert (fresh["requests"], fresh["correction"], fresh["effective_per_1k"]) == (0, 1.0, 2.0)
