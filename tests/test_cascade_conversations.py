"""Cascades and aggregates in a conversation: each call gets what a single call gets
(context windows judged before calling, an upstream's context-length refusal moving on
to a model that fits, the history made valid for a model that did not write it), and
the session is bound to the model whose answer was returned. A real gateway in front of
the real upstream with known skills (tests/support/skilled_upstream.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.cascades import answer_text, client_fixture, gateway_fixture  # noqa: F401
from tests.support.logs import log_line
from tests.support.skilled_upstream import SkilledUpstream

POLICY = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
affinity: {enabled: true, from_prefix: false}
models:
  cheap-a: {provider: up}
  cheap-b: {provider: up}
  expensive: {provider: up, context_window: 100000}
  small-a: {provider: up, upstream_model: cheap-a, context_window: 500, fallbacks: [roomy-a]}
  roomy-a: {provider: up, upstream_model: cheap-a, context_window: 100000}
  small-b: {provider: up, upstream_model: cheap-b, context_window: 500}
  small-e: {provider: up, upstream_model: expensive, context_window: 600}
  cramped: {provider: up, upstream_model: cramped-cheap-a, context_window: 50000,
            fallbacks: [cheap-a]}
  cramped-e: {provider: up, upstream_model: cramped-expensive, context_window: 50000}
  small-judge: {provider: up, upstream_model: judge, context_window: 500}
  small-refiner: {provider: up, upstream_model: refiner, context_window: 500}
decisions:
  - name: replaced
    when: false
    route: {algorithm: cascade, params: {stages: [[small-a, small-b], [expensive]]}}
  - name: passed
    when: false
    route: {algorithm: cascade, params: {stages: [[small-b, small-e], [expensive]]}}
  - name: hopeless
    when: false
    route: {algorithm: cascade, params: {stages: [[small-b], [small-e]]}}
  - name: hopeless-panel
    when: false
    route: {algorithm: aggregate, params: {models: [small-b, small-e]}}
  - name: overflowing
    when: false
    route: {algorithm: cascade, params: {stages: [[cramped, cheap-b], [cramped-e, expensive]]}}
  - name: unverifiable
    when: false
    route:
      algorithm: cascade
      params: {stages: [[cheap-a], [expensive]], stop: {rule: verifier, model: small-judge}}
  - name: unrefinable
    when: false
    route:
      algorithm: aggregate
      params: {models: [cheap-a, cheap-b], combine: refine, refiner: {model: small-refiner}}
  - name: single
    when: false
    route: {candidates: [cheap-a, expensive]}
  - name: cascade
    when: true
    route: {algorithm: cascade, params: {stages: [[cheap-a, cheap-b], [expensive]]}}
"""
EASY = "easy: what is 2 + 2?"
HARD = "hard: what is the twelfth number?"
PADDING = " word" * 800  # about 800 tokens: over the small windows (500, 600), 4000+ chars


def ask(
    client: httpx.Client,
    content: str,
    model: str,
    *,
    status: int = 200,
    session: str | None = None,
    history: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> httpx.Response:
    messages = [*(history or []), {"role": "user", "content": content}]
    headers = {"x-session-id": session} if session else {}
    body = {"model": model, "messages": messages} | extra
    answer = client.post("/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == status, answer.text
    return answer


# --- context windows -------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_stage_model_too_small_is_replaced_by_its_fallback_before_any_call(
    client: httpx.Client,
    skilled: SkilledUpstream,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    answer = ask(client, EASY + PADDING, "replaced", stream=stream)
    # small-a's fallback roomy-a takes its place; small-b has none and is passed over, so
    # the stage has one answer, nothing to agree with: it escalates.
    assert answer.headers["x-router-calls"] == (
        "roomy-a:agree-fail,small-b:context,expensive:answered"
    )
    assert answer.headers["x-router-model"] == "expensive"
    assert answer_text(answer) == "The answer is 4."
    assert sorted(skilled.models_called()) == ["cheap-a", "expensive"]  # never cheap-b
    line = log_line(caplog, answer.headers["x-router-request-id"])
    assert sorted(line["skipped"]) == [["small-a", "context"], ["small-b", "context"]]
    assert line["calls_count"] == 2  # the call passed over was not made
    assert line["attempts"] == 2


def test_a_short_prompt_still_calls_the_small_models(client: httpx.Client) -> None:
    answer = ask(client, EASY, "replaced")
    assert answer.headers["x-router-calls"] == "small-a:answered,small-b:agreed"


def test_a_stage_no_model_of_which_fits_is_skipped(
    client: httpx.Client, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    answer = ask(client, HARD + PADDING, "passed")
    assert answer.headers["x-router-calls"] == (
        "small-b:context,small-e:context,expensive:answered"
    )
    assert answer_text(answer) == "The answer is 12."
    assert skilled.models_called() == ["expensive"]
    line = log_line(caplog, answer.headers["x-router-request-id"])
    assert line["stages"] == 2


@pytest.mark.parametrize(
    ("decision", "stream"), [("hopeless", False), ("hopeless", True), ("hopeless-panel", False)]
)
def test_a_plan_no_model_of_which_fits_is_a_single_calls_400(
    client: httpx.Client, skilled: SkilledUpstream, decision: str, stream: bool
) -> None:
    answer = ask(client, HARD + PADDING, decision, status=400, stream=stream)
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
    assert "the largest context window is 600 tokens (model 'small-e')" in error["message"]
    assert skilled.models_called() == []


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_context_refusal_moves_each_call_to_a_model_that_fits(
    client: httpx.Client, skilled: SkilledUpstream, stream: bool
) -> None:
    answer = ask(client, HARD + PADDING, "overflowing", stream=stream)
    # cramped and cramped-e declare 50000 but their upstream refuses the prompt: cramped
    # moves on to its fallback cheap-a, cramped-e to the stage's larger window.
    assert answer.headers["x-router-calls"] == (
        "cheap-a:agree-fail,cheap-b:agree-fail,expensive:answered"
    )
    assert answer_text(answer) == "The answer is 12."
    called = skilled.models_called()
    assert called.index("cramped-cheap-a") < called.index("cheap-a")
    assert called[-2:] == ["cramped-expensive", "expensive"]


def test_a_verifier_too_small_for_its_prompt_leaves_the_answer_unverified(
    client: httpx.Client, skilled: SkilledUpstream
) -> None:
    answer = ask(client, EASY + PADDING, "unverifiable")
    assert answer.headers["x-router-calls"] == (
        "cheap-a:rejected,small-judge:context,expensive:answered"
    )
    assert "judge" not in skilled.models_called()
    short = ask(client, EASY, "unverifiable")  # its prompt fits: it verifies
    assert short.headers["x-router-calls"] == "cheap-a:answered,small-judge:verified-yes"


@pytest.mark.parametrize("stream", [False, True])
def test_a_refiner_too_small_for_its_prompt_leaves_the_answer_to_the_vote(
    client: httpx.Client, skilled: SkilledUpstream, stream: bool
) -> None:
    answer = ask(client, EASY + PADDING, "unrefinable", stream=stream)
    assert answer.headers["x-router-calls"] == (
        "cheap-a:answered,cheap-b:voted,small-refiner:context"
    )
    assert answer_text(answer) == "The answer is 4."
    assert "refiner" not in skilled.models_called()


# --- sessions --------------------------------------------------------------------------


def test_the_returned_answers_model_is_the_sessions_and_a_cascade_is_not_pinned(
    client: httpx.Client, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    first = ask(client, HARD, "cascade", session="s-1")
    assert first.headers["x-router-model"] == "expensive"
    assert (first.headers["x-router-session"], first.headers["x-router-affinity"]) == (
        "s-1",
        "miss",
    )
    # A following single-call turn stays on the model that answered the cascade.
    second = ask(client, EASY, "single", session="s-1")
    assert (second.headers["x-router-model"], second.headers["x-router-affinity"]) == (
        "expensive",
        "hit",
    )
    # The session does not pin the cascade: its stop rule needs its stages as planned.
    # The cheap models did not write the history: they get it made valid for them.
    history = [
        {"role": "user", "content": HARD},
        {"role": "assistant", "content": "The answer is 12.", "reasoning_content": "hmm"},
    ]
    skilled.requests.clear()
    third = ask(client, EASY, "cascade", session="s-1", history=history)
    assert third.headers["x-router-calls"] == "cheap-a:answered,cheap-b:agreed"
    assert third.headers["x-router-affinity"] == "rebound"
    for _, body in skilled.requests:
        assert "reasoning_content" not in body["messages"][1]
    line = log_line(caplog, third.headers["x-router-request-id"])
    assert line["rebound"] == "multi_call"
    assert line["switch"] == {"from": "expensive", "reason": "multi_call", "changed": ["reasoning"]}
    fourth = ask(client, EASY, "single", session="s-1")  # bound to cheap-a now
    assert (fourth.headers["x-router-model"], fourth.headers["x-router-affinity"]) == (
        "cheap-a",
        "hit",
    )


def test_the_bound_models_answer_is_a_hit_and_its_history_goes_as_it_is(
    client: httpx.Client, skilled: SkilledUpstream
) -> None:
    ask(client, EASY, "cascade", session="s-2")  # bound to cheap-a
    history = [
        {"role": "user", "content": EASY},
        {"role": "assistant", "content": "The answer is 4.", "reasoning_content": "sum"},
    ]
    skilled.requests.clear()
    again = ask(client, EASY, "cascade", session="s-2", history=history)
    assert (again.headers["x-router-model"], again.headers["x-router-affinity"]) == (
        "cheap-a",
        "hit",
    )
    sent = {model: body for model, body in skilled.requests}
    assert sent["cheap-a"]["messages"][1]["reasoning_content"] == "sum"  # it wrote it
    assert "reasoning_content" not in sent["cheap-b"]["messages"][1]
