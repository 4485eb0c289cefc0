"""A gateway holding a trained cascade's budget (``hold_budget``) on traffic skewed
toward its costly kind, in front of a real upstream on loopback (skilled_upstream.py).

The artifact is test_cascade_artifact_serving.py's: trained on rows half arithmetic (30%
hard), half law, at the rows' prices (c1, c2: $0.0001 a call; c3: $0.0002; E: $0.01).
Arithmetic goes to the cheap pair (c2, c1) and, when they disagree, to E; law to c3; at
a knob of $1.00 per 1k two thirds of the arithmetic prompts (by the hash of their
embedding) get that cascade, the rest c2 alone. Here the models are the upstream's
(c1 cheap-a, c2 cheap-b, c3 cheap-c, E expensive) at the same prices, and the traffic is
80% arithmetic, half of it hard (the cheap pair disagrees, E is paid): at the knob the
decision spends about three times its budget. With the hold, the mean spend per request
over the last half of the run is within ``TOLERANCE`` of the budget.

Each request is sent once the previous one's log line has been written (the hold has
been told its cost by then), so the run is the same every time.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from router_proxy.selection.budget_hold import MAX_STEP
from tests.support.cascades import gateway_for
from tests.support.logs import log_line
from tests.support.skilled_upstream import SkilledUpstream
from tests.test_cascade_artifact_serving import artifact
from tests.test_cascade_train import ARITHMETIC, CONTRACTS, LAW, OPTIONS

__all__ = ["artifact"]  # the trained artifact fixture, shared

BUDGET = 1.0  # US$ per 1k requests
REQUESTS, MEASURED = 800, 400  # the last MEASURED requests are measured
# The binomial spread of ~35 dear requests (E paid) among 400 is about +-17%; the
# estimate's own lag and noise add a few percent.
TOLERANCE = 0.25
HOLD = "{window: 200, min_requests: 100}"
# US$ per 1M tokens; every call is 10 prompt + 4 completion tokens: $0.0001, $0.0002, $0.01.
PRICES = {
    "c1": ("cheap-a", 5, 12.5),
    "c2": ("cheap-b", 5, 12.5),
    "c3": ("cheap-c", 10, 25),
    "E": ("expensive", 500, 1250),
}


def policy(artifact: Path, hold: str | None, cache: bool = False, failing: str = "") -> str:
    """The decision; ``failing``: a model whose every call fails (500)."""
    models = "".join(
        f"  {name}: {{provider: up, upstream_model: {'fail' if name == failing else upstream}, "
        f"cost: {{input_per_mtok: {given}, output_per_mtok: {taken}}}}}\n"
        for name, (upstream, given, taken) in PRICES.items()
    )
    held = f", hold_budget: {hold}" if hold is not None else ""
    return (
        f'providers:\n  up: {{type: openai, base_url: "${{UPSTREAM}}/v1"}}\n'
        f"models:\n{models}decisions:\n  - name: learned\n    when: true\n"
        f"    route: {{algorithm: cascade, params: {{artifact: {artifact}, "
        f"budget_per_1k: {BUDGET}{held}}}}}\n" + ("    cache: {mode: exact}\n" if cache else "")
    )


def traffic(count: int, seed: int = 0) -> list[str]:
    """80% arithmetic (half of it hard: the skilled cheap models then disagree), 20% law."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        if rng.random() < 0.8:
            prompt = rng.choice(ARITHMETIC).format(a=rng.randint(10, 999), b=rng.randint(10, 99))
            prompts.append(prompt + (" (a hard one)" if rng.random() < 0.5 else ""))
        else:
            prompts.append(rng.choice(LAW).format(x=rng.choice(CONTRACTS)) + OPTIONS)
    return prompts


@pytest.fixture(autouse=True)
def _access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="router_proxy.access")


def serve(
    client: httpx.Client,
    prompts: list[str],
    caplog: pytest.LogCaptureFixture,
    *,
    stream: bool = False,
) -> list[dict[str, Any]]:
    """Each prompt's log line, one request at a time."""
    lines = []
    for i, prompt in enumerate(prompts):
        body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
        if stream:
            body["stream"] = True
        request_id = f"hold-{len(caplog.records)}-{i}"
        answer = client.post(
            "/v1/chat/completions", json=body, headers={"x-request-id": request_id}
        )
        assert answer.status_code == 200, answer.text
        lines.append(log_line(caplog, request_id, every=0.001))
    return lines


def spend_per_1k(lines: list[dict[str, Any]]) -> float:
    return 1000 * sum(line["cost_usd"] or 0.0 for line in lines) / len(lines)


def hold_shown(client: httpx.Client) -> dict[str, Any]:
    body = {"model": "auto", "messages": [{"role": "user", "content": "What is 1 plus 2?"}]}
    shown: dict[str, Any] = client.post("/v1/route", json=body).json()["calls"]["hold"]
    return shown


def test_the_hold_keeps_skewed_traffic_at_the_budget(
    artifact: Path, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    prompts = traffic(REQUESTS)
    with gateway_for(policy(artifact, None), skilled) as url, httpx.Client(base_url=url) as c:
        unheld = serve(c, prompts[-MEASURED:], caplog)
    assert spend_per_1k(unheld) > 2 * BUDGET  # planned on other traffic: it overshoots
    assert {line["budget_per_1k"] for line in unheld} == {BUDGET}

    with gateway_for(policy(artifact, HOLD), skilled) as url, httpx.Client(base_url=url) as c:
        held = serve(c, prompts, caplog)
        shown = hold_shown(c)
        gauge = c.get("/metrics").text
    knobs = [line["budget_per_1k"] for line in held]
    assert set(knobs[:100]) == {BUDGET}  # nothing moves before min_requests
    assert min(knobs) >= BUDGET / 4  # lowered, within its bounds
    assert max(knobs) <= BUDGET
    measured = spend_per_1k(held[-MEASURED:])
    assert measured == pytest.approx(BUDGET, rel=TOLERANCE), (measured, knobs[-1])
    assert shown["requests"] == REQUESTS
    # the last request's knob, and the last one's cost since: one step at most
    assert shown["effective_per_1k"] == pytest.approx(knobs[-1], rel=MAX_STEP * 1.01)
    found = re.search(
        r'^router_multicall_effective_budget_per_1k\{decision="learned"\} (\S+)$', gauge, re.M
    )
    assert found is not None
    assert float(found.group(1)) == pytest.approx(shown["effective_per_1k"], rel=1e-3)


def test_streams_count_at_their_end_and_cache_hits_do_not(
    artifact: Path, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    text = policy(artifact, "{min_requests: 0}", cache=True)
    hard = "What is 120 plus 45? (a hard one)"
    with gateway_for(text, skilled) as url, httpx.Client(base_url=url) as c:
        streamed = serve(c, [hard], caplog, stream=True)
        assert hold_shown(c)["requests"] == 1
        assert streamed[0]["cost_usd"] > 0
        assert hold_shown(c)["recent_spend_per_1k"] == pytest.approx(1000 * streamed[0]["cost_usd"])
        again = serve(c, [hard, hard], caplog)  # the first stored; the second a hit
        assert [line["cache"] for line in again] == ["miss", "hit"]
        assert hold_shown(c)["requests"] == 2


def test_a_failed_request_is_not_counted(
    artifact: Path, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage is not cheap traffic: law's plan (c3 alone) fails, and the hold is told
    nothing of it."""
    law = LAW[0].format(x="lease") + OPTIONS
    text = policy(artifact, "{min_requests: 0}", failing="c3")
    with gateway_for(text, skilled) as url, httpx.Client(base_url=url) as c:
        body = {"model": "auto", "messages": [{"role": "user", "content": law}]}
        failed = c.post("/v1/chat/completions", json=body, headers={"x-request-id": "outage"})
        assert failed.status_code >= 500
        assert log_line(caplog, "outage")["calls"] == "c3:failed"
        assert hold_shown(c)["requests"] == 0
        serve(c, ["What is 120 plus 45?"], caplog)
        assert hold_shown(c)["requests"] == 1
