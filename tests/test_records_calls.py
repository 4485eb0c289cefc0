"""A cascade's or aggregate's served record keeps every call it made (``calls``), with
each answer's text when the record keeps content, redacted like the rest; a verifier's
verdict is listed but is no answer; ``join_records`` makes every answered call a response
of its model, so multi-call traffic yields wide rows without shadow calls. Gateways run
on real loopback sockets in front of the skilled upstream (tests/support/skilled_upstream.py);
each is stopped before its file is read, so every queued record has been written."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest

from router_proxy.engine.multi_call.note import MultiCallNote
from router_proxy.engine.record import RequestRecord
from router_proxy.records.config import RecordsConfig
from router_proxy.records.recorder import SKIPPED, Recorder
from router_proxy.training.records import join_records
from tests.support.cascades import answer_text, gateway_for
from tests.support.skilled_upstream import PROMPT_TOKENS, SkilledUpstream
from tests.test_records import ListSink, read

MODELS = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
models:
  cheap-a: {provider: up, cost: {input_per_mtok: 1000, output_per_mtok: 2000}}
  cheap-b: {provider: up, cost: {input_per_mtok: 1000, output_per_mtok: 2000}}
  expensive: {provider: up, cost: {input_per_mtok: 100000, output_per_mtok: 200000}}
  judge: {provider: up, cost: {input_per_mtok: 500, output_per_mtok: 500}}
  refiner: {provider: up, cost: {input_per_mtok: 50000, output_per_mtok: 50000}}
  signed-a: {provider: up, upstream_model: signed-cheap-a}
  signed-b: {provider: up, upstream_model: signed-cheap-b}
  signed-x: {provider: up, upstream_model: signed-expensive}
decisions:
  - name: cascade
    when: true
    route: {algorithm: cascade, params: {stages: [[cheap-a, cheap-b], [expensive]]}}
  - name: verified
    when: false
    route:
      algorithm: cascade
      params: {stages: [[cheap-a], [expensive]], stop: {rule: verifier, model: judge}}
  - name: refine
    when: false
    route:
      algorithm: aggregate
      params:
        models: [cheap-a, cheap-b]
        combine: refine
        refiner: {model: refiner, prompt: "Judge these. Q: {question}\\n{candidates}\\nA:"}
  - name: signed
    when: false
    route: {algorithm: cascade, params: {stages: [[signed-a, signed-b], [signed-x]]}}
"""
SHADOW_WAIT = 20.0  # a bound on waiting for background records, not a timing assertion
HARD = "hard: what is the twelfth number?"
EASY = "easy: what is 2 + 2?"
# US$ of one call: 10 prompt tokens and 4 completion tokens ("The answer is N.").
CHEAP_CALL = (PROMPT_TOKENS * 1000 + 4 * 2000) / 1e6
EXPENSIVE_CALL = (PROMPT_TOKENS * 100000 + 4 * 200000) / 1e6


def policy(path: Path, **section: Any) -> str:
    options = {"sink": {"type": "jsonl", "path": str(path)}, "flush_seconds": 0.05} | section
    return MODELS + "records: " + orjson.dumps(options).decode() + "\n"


def served(
    skilled: SkilledUpstream, path: Path, asks: list[dict[str, Any]], **section: Any
) -> list[dict[str, Any]]:
    """Each of ``asks`` (chat bodies) through a gateway recording to ``path``; the
    served records, in the order asked."""
    with gateway_for(policy(path, **section), skilled) as base_url:
        ids = []
        for ask in asks:
            body = {"messages": [{"role": "user", "content": ask.pop("q")}]} | ask
            answer = httpx.post(base_url + "/v1/chat/completions", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            answer_text(answer)  # a stream read to its end
            ids.append(answer.headers["x-router-request-id"])
    records = {r["request_id"]: r for r in read(path) if r["kind"] == "served"}
    return [records[i] for i in ids]


def brief(calls: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (c["model"], c["stage"], c["role"], c["reason"], c["ok"], c.get("answer")) for c in calls
    ]


def test_a_cascade_records_every_stage_answer_and_joins_into_wide_rows(
    skilled: SkilledUpstream, tmp_path: Path
) -> None:
    whole, streamed = served(
        skilled,
        tmp_path / "r.jsonl",
        [{"model": "cascade", "q": HARD}, {"model": "cascade", "q": HARD, "stream": True}],
        content=True,
    )
    for record in (whole, streamed):
        assert record["model"] == "expensive"
        assert record["answer"] == "The answer is 12."
        assert brief(record["calls"]) == [
            ("cheap-a", 0, "answer", "agree-fail", True, "The answer is 7."),
            ("cheap-b", 0, "answer", "agree-fail", True, "The answer is 9."),
            ("expensive", 1, "answer", "answered", True, "The answer is 12."),
        ]
        costs = [c["cost_usd"] for c in record["calls"]]
        assert costs == pytest.approx([CHEAP_CALL, CHEAP_CALL, EXPENSIVE_CALL])
        assert record["cost_usd"] == pytest.approx(sum(costs))
        assert record["calls"][0]["usage"] == {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": 4,
        }
        assert all(c["error"] is None for c in record["calls"])
    # The live last stage holds no text of its own: the relayed answer is its answer.
    assert "relayed" not in streamed["calls"][2]

    rows, report = join_records([whole, streamed])
    assert report.rows == 2
    assert report.models == ["cheap-a", "cheap-b", "expensive"]
    for row in rows:
        assert row.prompt == HARD
        assert row.responses == {
            "cheap-a": "The answer is 7.",
            "cheap-b": "The answer is 9.",
            "expensive": "The answer is 12.",
        }
        assert row.costs == pytest.approx(
            {"cheap-a": CHEAP_CALL, "cheap-b": CHEAP_CALL, "expensive": EXPENSIVE_CALL}
        )


def test_a_verdict_is_listed_but_is_no_response(skilled: SkilledUpstream, tmp_path: Path) -> None:
    hard, easy = served(
        skilled,
        tmp_path / "r.jsonl",
        [{"model": "verified", "q": HARD}, {"model": "verified", "q": EASY}],
        content=True,
    )
    assert brief(hard["calls"]) == [
        ("cheap-a", 0, "answer", "rejected", True, "The answer is 7."),
        ("judge", 0, "verdict", "verified-no", True, None),
        ("expensive", 1, "answer", "answered", True, "The answer is 12."),
    ]
    assert brief(easy["calls"]) == [
        ("cheap-a", 0, "answer", "answered", True, "The answer is 4."),
        ("judge", 0, "verdict", "verified-yes", True, None),
    ]
    assert all(
        "answer" not in c for r in (hard, easy) for c in r["calls"] if c["role"] == "verdict"
    )
    rows, report = join_records([hard, easy])
    assert [sorted(r.responses) for r in rows] == [["cheap-a", "expensive"]]
    assert report.single_answer == 1  # the easy one: cheap-a's answer, and a verdict


def test_a_refined_answer_is_no_response_of_the_refiner(
    skilled: SkilledUpstream, tmp_path: Path
) -> None:
    (record,) = served(
        skilled, tmp_path / "r.jsonl", [{"model": "refine", "q": HARD}], content=True
    )
    assert record["model"] == "refiner"
    assert brief(record["calls"]) == [
        ("cheap-a", 0, "answer", "candidate", True, "The answer is 7."),
        ("cheap-b", 0, "answer", "candidate", True, "The answer is 9."),
        ("refiner", 1, "refined", "answered", True, "The answer is 12."),
    ]
    ((row,), _) = join_records([record])
    assert row.responses == {"cheap-a": "The answer is 7.", "cheap-b": "The answer is 9."}


def test_call_answers_are_redacted_like_the_rest(skilled: SkilledUpstream, tmp_path: Path) -> None:
    (record,) = served(
        skilled,
        tmp_path / "r.jsonl",
        [{"model": "signed", "q": HARD + " I am bob@example.com"}],
        content=True,
        redact=True,
    )
    assert record["prompt"] == HARD + " I am [EMAIL]"
    assert record["answer"] == "The answer is 12. Mail [EMAIL]."
    answers = [c["answer"] for c in record["calls"]]
    assert answers == [f"The answer is {n}. Mail [EMAIL]." for n in (7, 9, 12)]


def test_without_content_the_calls_are_listed_without_text(
    skilled: SkilledUpstream, tmp_path: Path
) -> None:
    (record,) = served(skilled, tmp_path / "r.jsonl", [{"model": "cascade", "q": HARD}])
    assert "prompt" not in record
    assert "answer" not in record
    assert [(c["model"], c["reason"]) for c in record["calls"]] == [
        ("cheap-a", "agree-fail"),
        ("cheap-b", "agree-fail"),
        ("expensive", "answered"),
    ]
    assert all("answer" not in c for c in record["calls"])


def test_a_request_not_sampled_reads_none_of_its_calls(tmp_path: Path) -> None:
    class Untouchable(MultiCallNote):
        @property  # type: ignore[override]
        def calls(self) -> Any:
            raise AssertionError("an unsampled record's calls were read")

    sink = ListSink()
    config = RecordsConfig.model_validate({"sink": {"type": "jsonl", "path": str(tmp_path / "r")}})
    record = RequestRecord("r1", "chat", "POST", "/v1/chat/completions", sample=SKIPPED)
    record.calls = cast(MultiCallNote, Untouchable.__new__(Untouchable))
    Recorder(config, sink).served(record, 200, None, None)
    sink.close()
    assert sink.records == []


def test_the_request_own_answer_wins_over_a_shadow_answer_of_its_model() -> None:
    calls = [
        {"model": "a", "role": "answer", "ok": True, "answer": "own a", "cost_usd": 1.0},
        {"model": "j", "role": "verdict", "ok": True, "cost_usd": 0.1},
        {"model": "a", "role": "answer", "ok": True, "answer": "again a", "cost_usd": 9.0},
        {"model": "x", "role": "answer", "ok": False, "error": "upstream_error"},
        {"model": "b", "role": "answer", "ok": True, "answer": "own b", "cost_usd": 2.0},
    ]
    request = {"request_id": "q", "prompt": "p", "time": 1.0, "status": 200}
    served_record = request | {"kind": "served", "model": "b", "answer": "own b", "calls": calls}
    shadows = [
        request | {"kind": "shadow", "model": m, "answer": f"shadow {m}", "cost_usd": 5.0}
        for m in ("a", "c", "j")
    ]
    for order in ([served_record, *shadows], [*shadows, served_record]):
        ((row,), _) = join_records(order)
        assert row.responses == {"a": "own a", "b": "own b", "c": "shadow c", "j": "shadow j"}
        assert row.costs == {"a": 1.0, "b": 2.0, "c": 5.0, "j": 5.0}


def test_a_shadowed_cascade_asks_only_the_models_its_calls_did_not_answer(
    skilled: SkilledUpstream, tmp_path: Path
) -> None:
    """``shadow:`` on a cascade decision: an easy question answered by the cheap pair is
    shadowed to the plan's other model only (the pair's answers are in the record's
    calls), and the join gets all three; whole and streamed alike."""
    path = tmp_path / "r.jsonl"
    skilled.requests.clear()  # the upstream is the session's
    shadowed = policy(path, content=True).replace(
        "route: {algorithm: cascade, params: {stages: [[cheap-a, cheap-b], [expensive]]}}",
        "route: {algorithm: cascade, params: {stages: [[cheap-a, cheap-b], [expensive]]}}\n"
        "    shadow: {share: 1.0, budget_usd_per_day: 10}",
        1,
    )
    with gateway_for(shadowed, skilled) as base_url:
        ids = []
        for stream in (False, True):
            body = {"model": "cascade", "stream": stream}
            body["messages"] = [{"role": "user", "content": EASY}]
            answer = httpx.post(base_url + "/v1/chat/completions", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-router-calls"] == "cheap-a:answered,cheap-b:agreed"
            answer_text(answer)
            ids.append(answer.headers["x-router-request-id"])
        # Shadow calls start once the answer has gone, and write their records later.
        deadline = time.monotonic() + SHADOW_WAIT
        while sum(r["kind"] == "shadow" for r in read(path)) < len(ids):
            assert time.monotonic() < deadline, "the shadow records never came"
            time.sleep(0.02)
    records = read(path)
    shadows = [r for r in records if r["kind"] == "shadow"]
    assert sorted((r["request_id"], r["model"]) for r in shadows) == sorted(
        (i, "expensive") for i in ids
    )
    # Nobody asked the cheap pair twice: two calls each, both the cascade's.
    assert sorted(skilled.models_called()).count("cheap-a") == 2
    rows, report = join_records(records)
    assert report.models == ["cheap-a", "cheap-b", "expensive"]
    assert [r.id for r in rows] == ids
    assert rows[0].responses == {
        "cheap-a": "The answer is 4.",
        "cheap-b": "The answer is 4.",
        "expensive": "The answer is 4.",
    }
