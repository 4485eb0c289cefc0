"""Cascades and aggregates in the gateway (issue 15), against a real upstream on a
loopback port whose models have known skills (tests/support/skilled_upstream.py): two
cheap models that agree on easy questions and split on hard ones, an expensive one that
is right."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from tests.support.cascades import (  # noqa: F401
    cascade_policy,
    client_fixture,
    events,
    gateway_fixture,
    gateway_for,
    streamed_text,
)
from tests.support.logs import log_line
from tests.support.skilled_upstream import PROMPT_TOKENS, SkilledUpstream

MODELS = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
  ant: {type: anthropic, base_url: "${UPSTREAM}", api_key: k}
models:
  cheap-a: {provider: up, cost: {input_per_mtok: 1000, output_per_mtok: 2000}}
  cheap-b: {provider: up, cost: {input_per_mtok: 1000, output_per_mtok: 2000}}
  cheap-c: {provider: up, cost: {input_per_mtok: 1000, output_per_mtok: 2000}}
  expensive: {provider: up, cost: {input_per_mtok: 100000, output_per_mtok: 200000}}
  judge: {provider: up, cost: {input_per_mtok: 500, output_per_mtok: 500}}
  refiner: {provider: up, cost: {input_per_mtok: 50000, output_per_mtok: 50000}}
  flaky: {provider: up, upstream_model: fail, fallbacks: [cheap-a]}
  sleepy: {provider: up, upstream_model: hang, timeouts: {first_byte: 0.2, total: 1}}
  broken: {provider: up, upstream_model: fail}
  wrecked: {provider: up, upstream_model: fail}
  tooler: {provider: up}
  plain-a: {provider: up, upstream_model: plain-cheap-a}
  plain-b: {provider: up, upstream_model: plain-cheap-b}
  claude: {provider: ant}
"""
DECISIONS = """\
decisions:
  - name: cascade
    when: true
    route: {algorithm: cascade, params: {stages: [[cheap-a, cheap-b], [expensive]]}}
  - name: flaky-cascade
    when: false
    route: {algorithm: cascade, params: {stages: [[flaky, cheap-b], [expensive]]}}
  - name: timely
    when: false
    route: {algorithm: cascade, params: {stages: [[cheap-a, cheap-b], [sleepy, expensive]]}}
  - name: doomed
    when: false
    route: {algorithm: cascade, params: {stages: [[cheap-a, cheap-b], [broken]]}}
  - name: hopeless
    when: false
    route: {algorithm: aggregate, params: {models: [broken, flaky]}}
  - name: lost
    when: false
    route: {algorithm: aggregate, params: {models: [broken, wrecked]}}
  - name: tools
    when: false
    route: {algorithm: cascade, params: {stages: [[cheap-a, cheap-b], [tooler]]}}
  - name: confident
    when: false
    route:
      algorithm: cascade
      params: {stages: [[cheap-a], [expensive]], stop: {rule: confidence, min_mean_logprob: -0.5}}
  - name: unsure
    when: false
    route:
      algorithm: cascade
      params: {stages: [[plain-a, plain-b], [expensive]], stop: {rule: confidence}}
  - name: unsure-agree
    when: false
    route:
      algorithm: cascade
      params:
        stages: [[plain-a, plain-b], [expensive]]
        stop: {rule: confidence, without_logprobs: agree}
  - name: mixed-agree
    when: false
    route: {algorithm: cascade, params: {stages: [[cheap-a, plain-b], [expensive]],
            stop: {rule: confidence, without_logprobs: agree}}}
  - name: verified
    when: false
    route:
      algorithm: cascade
      params: {stages: [[cheap-a], [expensive]], stop: {rule: verifier, model: judge}}
  - name: thrifty
    when: false
    route:
      algorithm: cascade
      params: {stages: [[cheap-a, cheap-b], [expensive]], budget: {max_cost_usd: 0.00001}}
  - name: vote
    when: false
    route: {algorithm: aggregate, params: {models: [cheap-a, cheap-c, expensive]}}
  - name: refine
    when: false
    route:
      algorithm: aggregate
      params:
        models: [cheap-a, cheap-b]
        combine: refine
        refiner: {model: refiner, prompt: "Judge these. Q: {question}\\n{candidates}\\nA:"}
"""
POLICY = MODELS + DECISIONS
EASY = "easy: what is 2 + 2?"
HARD = "hard: what is the twelfth number?"
# US$ of one call: 10 prompt tokens and 4 completion tokens ("The answer is N.").
CHEAP_CALL = (PROMPT_TOKENS * 1000 + 4 * 2000) / 1e6
EXPENSIVE_CALL = (PROMPT_TOKENS * 100000 + 4 * 200000) / 1e6


def chat(client: httpx.Client, question: str, model: str = "auto", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": question}]} | extra
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    return answer


def content(answer: httpx.Response) -> str:
    text: str = answer.json()["choices"][0]["message"]["content"]
    return text


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The sum of ``name``'s series that carry ``labels``."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_an_easy_question_is_answered_by_the_cheap_stage(
    client: httpx.Client, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    answer = chat(client, EASY)
    assert content(answer) == "The answer is 4."
    assert answer.headers["x-router-model"] == "cheap-a"
    assert answer.headers["x-router-calls"] == "cheap-a:answered,cheap-b:agreed"
    assert sorted(skilled.models_called()) == ["cheap-a", "cheap-b"]
    usage = answer.json()["usage"]
    assert usage["prompt_tokens"] == 2 * PROMPT_TOKENS
    assert usage["completion_tokens"] == 8
    line = log_line(caplog, answer.headers["x-router-request-id"])
    assert line["cost_usd"] == pytest.approx(2 * CHEAP_CALL)
    assert line["stages"] == 1
    assert line["calls_count"] == 2
    assert line["calls"] == "cheap-a:answered,cheap-b:agreed"
    # The stage's calls went out whole (the client did not stream here, but they never do).
    assert all(not body.get("stream") for _, body in skilled.requests)


def test_a_text_completion_is_one_call_to_the_plans_first_model(
    client: httpx.Client, skilled: SkilledUpstream
) -> None:
    """A plan's calls are chat calls: a legacy text completion routed to a cascade goes to
    one model, the first of the plan's models (cheapest first) whose provider serves it."""
    answer = client.post(
        "/v1/completions",
        json={"model": "auto", "prompt": HARD},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-router-model"] == "cheap-a"
    assert "x-router-calls" not in answer.headers
    assert skilled.models_called() == ["cheap-a"]
    assert answer.json()["object"] == "text_completion"


def test_a_hard_question_escalates_and_every_call_is_paid_for(
    client: httpx.Client, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    spent_before = metric(client, "router_cost_dollars_total", model="cheap-b")
    answer = chat(client, HARD)
    assert content(answer) == "The answer is 12."
    assert answer.headers["x-router-model"] == "expensive"
    assert (
        answer.headers["x-router-calls"]
        == "cheap-a:agree-fail,cheap-b:agree-fail,expensive:answered"
    )
    assert answer.json()["usage"]["prompt_tokens"] == 3 * PROMPT_TOKENS
    line = log_line(caplog, answer.headers["x-router-request-id"])
    assert line["cost_usd"] == pytest.approx(2 * CHEAP_CALL + EXPENSIVE_CALL)
    assert line["model"] == "expensive"
    assert line["stages"] == 2
    assert len(line["stages_ms"]) == 2
    # The discarded cheap answer is charged to its own model in the metrics.
    spent = metric(client, "router_cost_dollars_total", model="cheap-b") - spent_before
    assert spent == pytest.approx(CHEAP_CALL)
    assert (
        metric(client, "router_multicall_stage_reached_total", decision="cascade", stage="2") >= 1
    )
    assert metric(client, "router_multicall_calls_count", decision="cascade") >= 1
    assert (
        metric(
            client,
            "router_multicall_call_outcomes_total",
            decision="cascade",
            model="cheap-a",
            outcome="agree-fail",
        )
        >= 1
    )


def test_a_failing_stage_model_falls_back_inside_its_stage(
    client: httpx.Client, skilled: SkilledUpstream
) -> None:
    answer = chat(client, EASY, model="flaky-cascade")
    # flaky's upstream fails; its fallback cheap-a answers in its place and agrees.
    assert answer.headers["x-router-calls"] == "cheap-a:answered,cheap-b:agreed"
    assert answer.headers["x-router-model"] == "cheap-a"
    assert "fail" in skilled.models_called()
    assert int(answer.headers["x-router-attempts"]) >= 3


def test_streaming_an_easy_question_replays_the_decided_answer(client: httpx.Client) -> None:
    answer = chat(client, EASY, stream=True, stream_options={"include_usage": True})
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["x-router-calls"] == "cheap-a:answered,cheap-b:agreed"
    chunks = events(answer)
    assert streamed_text(chunks) == "The answer is 4."
    assert chunks[-1]["usage"]["prompt_tokens"] == 2 * PROMPT_TOKENS
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_streaming_a_hard_question_streams_the_last_stage_live(
    client: httpx.Client, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    answer = chat(client, HARD, stream=True, stream_options={"include_usage": True})
    assert answer.headers["x-router-model"] == "expensive"
    chunks = events(answer)
    assert streamed_text(chunks) == "The answer is 12."
    # Word by word, as the upstream sent it: the last stage is relayed, not replayed.
    assert len([c for c in chunks if c["choices"]]) > 3
    assert chunks[-1]["usage"]["prompt_tokens"] == 3 * PROMPT_TOKENS  # every call's
    model, body = skilled.requests[-1]
    assert model == "expensive"
    assert body["stream"] is True
    line = log_line(caplog, answer.headers["x-router-request-id"])
    assert line["cost_usd"] == pytest.approx(2 * CHEAP_CALL + EXPENSIVE_CALL)
    assert line["calls"] == "cheap-a:agree-fail,cheap-b:agree-fail,expensive:answered"


def test_a_live_last_stage_keeps_the_first_byte_timeout_and_falls_back(
    client: httpx.Client, skilled: SkilledUpstream
) -> None:
    answer = chat(client, HARD, model="timely", stream=True)
    # sleepy sent nothing within its first_byte timeout: the stage's next model answers.
    assert answer.headers["x-router-model"] == "expensive"
    assert streamed_text(events(answer)) == "The answer is 12."
    assert "hang" in skilled.models_called()
    assert answer.headers["x-router-calls"].endswith(",expensive:answered")


def test_the_requests_deadline_spans_its_stages(skilled: SkilledUpstream) -> None:
    # Each call takes 0.6 s and the request may take 1 s: after the first stage (0.6 s)
    # the escalation has 0.4 s left, not a fresh second, so it times out and the
    # earliest answer is returned.
    slow = {
        m: f"upstream_model: slow-{u}"
        for m, u in zip("abe", ("cheap-a", "cheap-b", "expensive"), strict=True)
    }
    policy = cascade_policy(
        slow, "[[a, b], [e]]", "{retries: {deadline: 1.0, attempts_per_model: 1}}"
    )
    with (
        gateway_for(policy, skilled) as base_url,
        httpx.Client(base_url=base_url, timeout=30) as c,
    ):
        answer = chat(c, HARD)
    assert answer.headers["x-router-model"] == "a"
    a, b, e = answer.headers["x-router-calls"].split(",")
    assert (a, b) == ("a:answered", "b:agree-fail")
    assert e.startswith("e:")
    assert e != "e:answered"


def test_a_failed_last_stage_returns_the_earliest_answer(client: httpx.Client) -> None:
    for stream in (False, True):
        answer = chat(client, HARD, model="doomed", stream=stream)
        assert answer.headers["x-router-model"] == "cheap-a"
        assert answer.headers["x-router-calls"] == (
            "cheap-a:answered,cheap-b:agree-fail,broken:failed"
        )


def test_a_panel_answers_while_one_of_it_answers(client: httpx.Client) -> None:
    # broken fails; flaky fails and its fallback cheap-a answers: the panel still answers.
    answer = chat(client, EASY, model="hopeless")
    assert answer.headers["x-router-calls"] == "broken:failed,cheap-a:answered"


def test_a_panel_nobody_answers_is_an_error_that_names_the_calls(client: httpx.Client) -> None:
    body = {"model": "lost", "messages": [{"role": "user", "content": EASY}]}
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "all_candidates_failed"
    assert answer.headers["x-router-calls"] == "broken:failed,wrecked:failed"


def test_a_last_stage_that_calls_a_tool_is_returned_as_it_is(client: httpx.Client) -> None:
    answer = chat(client, HARD, model="tools")
    assert answer.headers["x-router-model"] == "tooler"
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "lookup"
    assert answer.json()["usage"]["completion_tokens"] == 4 + 4 + 5


def test_the_confidence_rule_asks_for_logprobs_and_escalates_on_doubt(
    client: httpx.Client, skilled: SkilledUpstream
) -> None:
    easy = chat(client, EASY, model="confident")
    assert easy.headers["x-router-calls"] == "cheap-a:answered"
    assert skilled.requests[-1][1]["logprobs"] is True
    hard = chat(client, HARD, model="confident")
    assert hard.headers["x-router-calls"] == "cheap-a:low-confidence,expensive:answered"
    assert content(hard) == "The answer is 12."
    assert "logprobs" not in skilled.requests[-1][1]  # the last stage is not judged


def test_answers_without_logprobs_escalate_or_are_judged_by_agreement(
    client: httpx.Client,
) -> None:
    # By default an answer that carries no logprobs cannot be confident: it escalates.
    easy = chat(client, EASY, model="unsure")
    assert easy.headers["x-router-calls"] == (
        "plain-a:no-logprobs,plain-b:no-logprobs,expensive:answered"
    )
    # without_logprobs: agree judges such a stage as `stop: agree` would.
    agreed = chat(client, EASY, model="unsure-agree")
    assert agreed.headers["x-router-calls"] == "plain-a:answered,plain-b:agreed"
    split = chat(client, HARD, model="unsure-agree")
    assert split.headers["x-router-calls"] == (
        "plain-a:no-logprobs,plain-b:no-logprobs,expensive:answered"
    )
    # A model that sends logprobs is still judged by them first.
    assert chat(client, EASY, model="mixed-agree").headers["x-router-calls"] == (
        "cheap-a:answered,plain-b:no-logprobs"
    )
    doubtful = chat(client, HARD, model="mixed-agree")
    assert doubtful.headers["x-router-calls"] == (
        "cheap-a:low-confidence,plain-b:no-logprobs,expensive:answered"
    )


def test_a_confidence_stage_with_a_model_that_never_sends_logprobs_must_say_so() -> None:
    stages = "stages: [[cheap-a, claude], [expensive]]"
    message = config_error(
        f"decisions:\n  - {{name: d, when: true, route: {{algorithm: cascade, params: "
        f"{{{stages}, stop: {{rule: confidence}}}}}}}}\n"
    )
    assert (
        "decisions[0].route.params: stop: model 'claude' (stages[0][1]) is served by provider "
        "'ant' (type anthropic), which never returns logprobs" in message
    )
    for fine in (
        f"{{{stages}, stop: {{rule: confidence, without_logprobs: escalate}}}}",
        "{stages: [[cheap-a], [claude]], stop: {rule: confidence}}",  # the last is not judged
        f"{{{stages}, stop: agree}}",
    ):
        policy = MODELS + (
            f"decisions:\n  - {{name: d, when: true, route: {{algorithm: cascade, "
            f"params: {fine}}}}}\n"
        )
        load_config_text(policy, env={"UPSTREAM": "http://127.0.0.1:9"})


def test_max_attempts_bounds_the_request_not_each_call(skilled: SkilledUpstream) -> None:
    # Every model answers 503 (retried, then fallen back from). Each of the three planned
    # calls makes its first attempt; retries and fallbacks share max_attempts - 1 = 2 more.
    # (Counted per call, as before, they could make 3 each: 9.)
    busy = {m: f"upstream_model: busy, fallbacks: [{f}]" for m, f in zip("abc", "cca", strict=True)}
    retries = "{attempts_per_model: 2, max_attempts: 3, backoff_initial: 0, backoff_max: 0}"
    policy = cascade_policy(
        busy, "[[a, b], [c]]", f"{{retries: {retries}, breaker: {{failures: 100}}}}"
    )
    with (
        gateway_for(policy, skilled) as base_url,
        httpx.Client(base_url=base_url, timeout=30) as c,
    ):
        for stream in (False, True):
            before = len(skilled.requests)
            body = {"model": "auto", "messages": [{"role": "user", "content": EASY}]}
            answer = c.post("/v1/chat/completions", json=body | {"stream": stream})
            assert answer.status_code >= 500
            assert answer.headers["x-router-attempts"] == "5"
            assert len(skilled.requests) - before == 5


def test_the_verifier_rule_asks_a_model_and_counts_its_call(
    client: httpx.Client, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    easy = chat(client, EASY, model="verified")
    assert easy.headers["x-router-calls"] == "cheap-a:answered,judge:verified-yes"
    hard = chat(client, HARD, model="verified")
    assert hard.headers["x-router-calls"] == "cheap-a:rejected,judge:verified-no,expensive:answered"
    judged = [body for model, body in skilled.requests if model == "judge"][-1]
    assert "Proposed answer:\nThe answer is 7." in judged["messages"][0]["content"]
    assert hard.json()["usage"]["prompt_tokens"] == 3 * PROMPT_TOKENS
    line = log_line(caplog, hard.headers["x-router-request-id"])
    judge_call = (PROMPT_TOKENS * 500 + 1 * 500) / 1e6
    assert line["cost_usd"] == pytest.approx(CHEAP_CALL + judge_call + EXPENSIVE_CALL)


def test_a_spent_budget_stops_escalating(client: httpx.Client, skilled: SkilledUpstream) -> None:
    answer = chat(client, HARD, model="thrifty")
    assert answer.headers["x-router-calls"] == "cheap-a:budget-answered,cheap-b:agree-fail"
    assert "expensive" not in skilled.models_called()


def test_aggregate_by_majority_vote(client: httpx.Client, skilled: SkilledUpstream) -> None:
    answer = chat(client, HARD, model="vote")
    assert content(answer) == "The answer is 12."
    assert answer.headers["x-router-model"] == "cheap-c"  # the earliest backing the winner
    assert answer.headers["x-router-calls"] == "cheap-a:outvoted,cheap-c:answered,expensive:voted"
    streamed = chat(client, HARD, model="vote", stream=True)
    assert streamed_text(events(streamed)) == "The answer is 12."


def test_aggregate_with_a_refiner(
    client: httpx.Client, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    answer = chat(client, HARD, model="refine")
    assert content(answer) == "The answer is 12."
    assert answer.headers["x-router-model"] == "refiner"
    assert (
        answer.headers["x-router-calls"] == "cheap-a:candidate,cheap-b:candidate,refiner:answered"
    )
    asked = [body for model, body in skilled.requests if model == "refiner"][-1]
    prompt = asked["messages"][0]["content"]
    assert prompt.startswith("Judge these. Q: hard: what is the twelfth number?")
    assert "Answer 1:\nThe answer is 7." in prompt
    assert "Answer 2:\nThe answer is 9." in prompt
    line = log_line(caplog, answer.headers["x-router-request-id"])
    assert line["stages"] == 2
    assert line["calls_count"] == 3
    streamed = chat(client, HARD, model="refine", stream=True)
    assert streamed_text(events(streamed)) == "The answer is 12."
    model, body = skilled.requests[-1]
    assert model == "refiner"
    assert body["stream"] is True  # the refiner streams live


def test_the_responses_and_messages_surfaces_get_their_own_shapes(
    client: httpx.Client,
) -> None:
    response = client.post("/v1/responses", json={"model": "auto", "input": HARD})
    assert response.status_code == 200, response.text
    assert response.headers["x-router-model"] == "expensive"
    assert response.json()["output"][0]["content"][0]["text"] == "The answer is 12."
    message = client.post(
        "/v1/messages",
        json={"model": "auto", "max_tokens": 50, "messages": [{"role": "user", "content": EASY}]},
    )
    assert message.status_code == 200, message.text
    assert message.json()["content"][0]["text"] == "The answer is 4."
    assert message.headers["x-router-calls"] == "cheap-a:answered,cheap-b:agreed"
    stream = client.post(
        "/v1/messages",
        json={
            "model": "auto",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": HARD}],
        },
    )
    assert stream.status_code == 200
    assert "event: message_stop" in stream.text
    assert "12." in stream.text
    for question, expected in ((EASY, "The answer is 4."), (HARD, "The answer is 12.")):
        streamed = client.post(
            "/v1/responses", json={"model": "auto", "input": question, "stream": True}
        )
        assert streamed.status_code == 200
        done = [
            json.loads(line.removeprefix("data: "))
            for line in streamed.text.splitlines()
            if line.startswith("data: ") and "response.completed" in line
        ]
        (completed,) = done
        output = completed["response"]["output"][0]["content"][0]["text"]
        assert output == expected
        assert completed["response"]["usage"]["input_tokens"] >= 2 * PROMPT_TOKENS


def test_the_route_dry_run_shows_the_plan(client: httpx.Client) -> None:
    plan = client.post(
        "/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": EASY}]}
    ).json()
    assert plan["calls"]["kind"] == "cascade"
    assert plan["calls"]["stages"] == [["cheap-a", "cheap-b"], ["expensive"]]
    assert plan["candidates"] == ["cheap-a", "cheap-b", "expensive"]


def config_error(decisions: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config_text(MODELS + decisions, env={"UPSTREAM": "http://127.0.0.1:9"})
    return str(caught.value)


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            "{algorithm: cascade, params: {stages: [[cheap-a, nope], [expensive]]}}",
            "decisions[0].route.params.stages[0][1]: unknown model 'nope'",
        ),
        (
            "{algorithm: cascade, params: {stages: [[cheap-a], []]}}",
            "decisions[0].route.params.stages[1]: List should have at least 1 item",
        ),
        (
            "{algorithm: cascade, params: {stages: [[cheap-a, cheap-a]]}}",
            "decisions[0].route.params.stages[0][1]: model 'cheap-a' is listed twice",
        ),
        (
            "{algorithm: cascade, params: {stages: [[cheap-a]], stop: {rule: verifier, model: x}}}",
            "decisions[0].route.params.stop.model: unknown model 'x'",
        ),
        (
            "{algorithm: cascade, candidates: [cheap-a], params: {stages: [[cheap-a]]}}",
            "decisions[0].route.candidates: cascade names its models in params",
        ),
        (
            "{algorithm: cascade, params: {stages: [[cheap-a]], stop: {rule: verifier, model: judge, prompt: hi}}}",
            "decisions[0].route.params.stop.prompt: the prompt must contain {question}, {answer}",
        ),
        (
            "{algorithm: cascade, params: {stages: [[cheap-a]], stop: {rule: guess}}}",
            "decisions[0].route.params.stop: Input tag 'guess' found using 'rule' does not match",
        ),
        (
            "{algorithm: aggregate, params: {models: [cheap-a, cheap-b], combine: refine}}",
            "decisions[0].route.params: combine: refine needs a refiner",
        ),
        (
            "{algorithm: aggregate, params: {models: [cheap-a, ghost]}}",
            "decisions[0].route.params.models[1]: unknown model 'ghost'",
        ),
        ("{algorithm: static}", "decisions[0].route.candidates: list should have at least 1 item"),
        (
            "{algorithm: cheapest, params: {expected_output_tokens: 5}}",
            "decisions[0].route.candidates: name at least one model",
        ),
    ],
)
def test_config_errors_name_the_yaml_path(route: str, expected: str) -> None:
    message = config_error(f"decisions:\n  - {{name: d, when: true, route: {route}}}\n")
    assert expected in message


# --- the stop rules' reading of answers, without HTTP ---------------------------------


def judged(
    texts: list[str], question: str, code_similarity: float | None = None, rule: str = "agree"
) -> str | None:
    """The model whose answer the stage returns under ``stop: agree`` (or under
    ``confidence`` falling back to agreement: these answers have no logprobs)."""
    from router_proxy.engine.multi_call.calls import Call
    from router_proxy.engine.multi_call.rules import Judging
    from router_proxy.engine.multi_call.stop_agree import AgreeRule
    from router_proxy.engine.multi_call.stop_confidence import ConfidenceRule
    from router_proxy.selection.multi_call import AgreeStop, ConfidenceStop

    calls = [Call(f"m{i}", 0, body={}, text=text) for i, text in enumerate(texts)]
    # Agreement reads only the question: no caller, body or note.
    judging = Judging(question, None, None, None)  # type: ignore[arg-type]
    judge: AgreeRule | ConfidenceRule = AgreeRule(AgreeStop(code_similarity=code_similarity))
    if rule == "confidence":
        stop = ConfidenceStop(
            rule="confidence", without_logprobs="agree", code_similarity=code_similarity
        )
        judge = ConfidenceRule(stop)
    chosen = asyncio.run(judge.judge(calls, judging))
    return chosen.model if chosen is not None else None


def test_agreement_compares_final_answers_not_wording() -> None:
    question = "Which is a prime?\nA) 4\nB) 7\nC) 9\nD) 12"
    assert judged(["The answer is (B).", "B) 7 is prime"], question) == "m0"
    assert judged(["The answer is B.", "C"], question) is None
    assert judged(["So 1,000 in all. #### 1000", "The answer is 1000."], "How many?") == "m0"
    code = "Write a python function that adds two numbers."
    one = "```python\ndef add(a, b):\n    return a + b\n```"
    two = "Here it is:\n```python\ndef plus(x, y):\n    # sum\n    return x + y\n```"
    assert judged([one, two], code) == "m0"
    minus = one.replace("a + b", "a - b")
    assert judged([one, minus], code) == "m0"  # at the default 0.2, nearly the same code
    assert judged([one, minus], code, code_similarity=0.95) is None  # a trained threshold
    # Confidence without logprobs, judged by agreement: at the same threshold.
    assert judged([one, minus], code, rule="confidence") == "m0"
    assert judged([one, minus], code, code_similarity=0.95, rule="confidence") is None
    assert judged(["The answer is 4.", "I cannot help with that."], "How many?") is None


def test_verifier_replies_and_logprobs_are_read_plainly() -> None:
    from router_proxy.engine.multi_call.calls import mean_logprob
    from router_proxy.engine.multi_call.stop_verifier import accepted

    assert accepted("Yes.")
    assert accepted("  yes, it is right")
    assert not accepted("No")
    assert not accepted("The answer is yes")  # a verdict comes first, or it is no verdict
    assert not accepted(None)
    tokens = {"content": [{"logprob": -0.5}, {"logprob": -1.5}]}
    assert mean_logprob(tokens) == -1.0
    assert mean_logprob(None) is None
    assert mean_logprob({"content": []}) is None


def test_every_call_is_charged_to_its_models_budget(skilled: SkilledUpstream) -> None:
    """cheap-b's answer is discarded on a hard question, yet its tokens count against its
    own limit: the next request finds it spent and goes on without it."""
    limited = MODELS + "limits: {per_model: {cheap-b: {tokens_per_minute: 10}}}\n" + DECISIONS
    with gateway_for(limited, skilled) as base_url, httpx.Client(base_url=base_url) as c:
        first = chat(c, HARD)
        assert first.headers["x-router-calls"].startswith("cheap-a:agree-fail,cheap-b:agree-fail")
        second = chat(c, EASY)
        # cheap-b is over its budget: the pair cannot agree, so even an easy one escalates.
        assert second.headers["x-router-calls"] == (
            "cheap-a:agree-fail,cheap-b:failed,expensive:answered"
        )
