"""``router-proxy replay`` end to end: ``router-proxy serve`` (its own process) records
the requests an OpenAI SDK client sends; ``replay`` routes those records again under a
changed policy and reports the decisions, models and cost that change, and the records it
could not replay because they were recorded without content."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from router_proxy.cli import main
from tests.support.gateway_process import ROOT, GatewayProcess

SERVED = """\
server: {{watch_config: false}}
providers:
  mock: {{type: mock, reply: "[{{model}}] You said: {{prompt}}"}}
models:
  small: {{provider: mock, cost: {{input_per_mtok: 1, output_per_mtok: 2}}}}
  coder: {{provider: mock, cost: {{input_per_mtok: 3, output_per_mtok: 6}}}}
  large: {{provider: mock, cost: {{input_per_mtok: 30, output_per_mtok: 60}}}}
signals:
  - {{name: code, type: keyword, any: [python]}}
  - {{name: casual, type: keyword, any: [hello]}}
decisions:
  - {{name: coding, priority: 10, when: code, route: {{candidates: [coder, large]}}}}
  - {{name: default, when: true, route: {{candidates: [small]}}}}
records:
  sink: {{type: jsonl, path: "{path}"}}
  content: true
  decisions: {{default: {{content: {default_content}}}}}
"""

# The change under review: code goes to the large model, greetings get their own decision.
CHANGED = """\
providers:
  mock: {type: mock}
models:
  small: {provider: mock, cost: {input_per_mtok: 1, output_per_mtok: 2}}
  coder: {provider: mock, cost: {input_per_mtok: 3, output_per_mtok: 6}}
  large: {provider: mock, cost: {input_per_mtok: 30, output_per_mtok: 60}}
signals:
  - {name: code, type: keyword, any: [python]}
  - {name: casual, type: keyword, any: [hello]}
decisions:
  - {name: coding, priority: 10, when: code, route: {candidates: [large, coder]}}
  - {name: greeting, priority: 5, when: casual, route: {candidates: [small]}}
  - {name: default, when: true, route: {candidates: [small]}}
"""

PROMPTS = ["python: reverse a list", "python: sort a dict", "hello there", "what is 2+2"]


def serve_and_record(tmp_path: Path, *, default_content: bool) -> Path:
    records = tmp_path / "records" / "served.jsonl"
    policy = SERVED.format(path=records, default_content=str(default_content).lower())
    with GatewayProcess(policy, tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="x", max_retries=0)
        for prompt in PROMPTS:
            client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": prompt}]
            )
        gateway.terminate()  # SIGTERM: drained, and the sink flushed and closed
        assert gateway.wait(timeout=30) == 0, gateway.output()
    return records


def run_replay(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "router_proxy", "replay", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_serve_records_then_replay_reports_the_change(tmp_path: Path) -> None:
    records = serve_and_record(tmp_path, default_content=True)
    rows = [orjson.loads(line) for line in records.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == PROMPTS
    assert [r["decision"] for r in rows] == ["coding", "coding", "default", "default"]
    assert rows[0]["model"] == "coder"
    assert rows[0]["answer"] == "[coder] You said: " + PROMPTS[0]

    changed = tmp_path / "changed.yaml"
    changed.write_text(CHANGED)
    result = run_replay("--records", str(records.parent), "--config", str(changed), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["served_records"] == 4
    assert report["replayed"] == 4
    assert report["not_replayable"] == {"no_content": 0}
    assert report["decisions_changed"] == 1  # hello: default -> greeting
    assert report["models_changed"] == 2  # code: coder -> large
    assert {(t["from"], t["to"], t["count"]) for t in report["model_transitions"]} == {
        ("coder", "large", 2),
        ("small", "small", 2),
    }
    assert ("default", "greeting", 1) in {
        (t["from"], t["to"], t["count"]) for t in report["decision_transitions"]
    }
    assert {e["prompt"] for e in report["examples"]} == {*PROMPTS[:3]}
    # Coding rows now cost 10x (the large model's prices for the same tokens).
    coding = [r for r in rows if r["decision"] == "coding"]
    more = sum(9 * r["cost_usd"] for r in coding)
    assert report["cost"]["change_usd"] == pytest.approx(more)
    assert report["cost"]["recorded_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows))

    text = run_replay("--records", str(records), "--config", str(changed), "--quiet")
    assert text.returncode == 0, text.stderr
    assert "models:    2 of 4 changed" in text.stdout
    assert "coder -> large: 2  *" in text.stdout


def test_records_without_content_are_counted_apart_and_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = serve_and_record(tmp_path, default_content=False)
    changed = tmp_path / "changed.yaml"
    changed.write_text(CHANGED)
    assert main(["replay", "--records", str(records), "--config", str(changed), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "records:   4 served, 2 replayed, 2 without content" in out
    assert "note: 2 of 4 served records have no prompt" in out
    assert "records.content: true" in out


def test_replay_needs_readable_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    changed = tmp_path / "changed.yaml"
    changed.write_text(CHANGED)
    missing = str(tmp_path / "nothing.jsonl")
    assert main(["replay", "--records", missing, "--config", str(changed)]) == 2
    assert "no records file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "served", "prompt": "x"}\nnot json\n')
    assert main(["replay", "--records", str(bad), "--config", str(changed), "--quiet"]) == 1
    assert f"{bad}:2: not JSON" in capsys.readouterr().err


def test_shadow_records_and_direct_requests_replay_as_they_were(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: list[dict[str, Any]] = [
        {"kind": "shadow", "request_id": "a", "model": "large", "answer": "x"},
        {
            "kind": "served",
            "request_id": "b",
            "decision": "direct",
            "requested_model": "coder",
            "candidates": ["coder"],
            "model": "coder",
            "prompt": "python",
        },
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    changed = tmp_path / "changed.yaml"
    changed.write_text(CHANGED)
    assert main(["replay", "--records", str(path), "--config", str(changed), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["served_records"] == 1  # the shadow record is no served request
    assert report["decision_transitions"] == [{"from": "direct", "to": "direct", "count": 1}]


# CHANGED's models, with one cascade for everything.
CASCADED = (
    CHANGED.split("signals:")[0]
    + """\
decisions:
  - name: default
    when: true
    route: {algorithm: cascade, params: {stages: [[small, coder], [large]], stop: agree}}
"""
)


def test_a_cascade_is_priced_at_the_calls_every_request_makes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under a cascade policy a request costs at least its first stage (escalation needs
    answers a replay has not got); a recorded cascade's tokens are its answer's, not the
    sum over its calls."""
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}
    lines: list[dict[str, Any]] = [
        {
            "kind": "served",
            "request_id": "single",
            "decision": "default",
            "candidates": ["large"],
            "model": "large",
            "prompt": "what is 2+2",
            "usage": usage,
            "cost_usd": 90.0,
        },
        {
            "kind": "served",
            "request_id": "cascaded",
            "decision": "default",
            "candidates": ["small", "coder", "large"],
            "model": "large",
            "prompt": "what is 3+3",
            "usage": {"prompt_tokens": 3_000_000, "completion_tokens": 3_000_000},
            "cost_usd": 102.0,
            "calls": [
                {"model": "small", "role": "answer", "usage": usage},
                {"model": "coder", "role": "answer", "usage": usage},
                {"model": "large", "role": "answer", "usage": usage},
            ],
        },
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    policy = tmp_path / "cascaded.yaml"
    policy.write_text(CASCADED)
    assert main(["replay", "--records", str(path), "--config", str(policy), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    cost = report["cost"]
    # Each row: small + coder on a million tokens each way ($3 + $9), never large's $90.
    assert cost["estimated_usd"] == pytest.approx(2 * 12.0)
    assert cost["recorded_usd"] == pytest.approx(192.0)
    assert cost["rows_multi_call"] == 2
    assert any("a lower bound" in note for note in report["notes"])
    # Back to one model: the recorded cascade is priced with its answer's tokens.
    single = tmp_path / "single.yaml"
    single.write_text(CHANGED)
    assert main(["replay", "--records", str(path), "--config", str(single), "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert cost["estimated_usd"] == pytest.approx(2 * 3.0)  # small, $1 + $2 per row
    assert cost["rows_multi_call"] == 0
