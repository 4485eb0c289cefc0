"""``router-proxy generate`` end to end, offline: deterministic fake models behind a real
local HTTP server (tests/support/generate_upstream.py), called through the policy's providers.

* generate -> train cascal -> a cascal decision routes fresh arithmetic prompts to the
  model that is right on arithmetic and law prompts to the one right on law;
* the CLI killed (SIGKILL) twice mid-run and resumed: no call is answered twice, and the
  rows are exactly those of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from router_proxy.cli import main
from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.pipeline import Pipeline
from tests.support.generate_upstream import (
    POOL,
    GenerateUpstream,
    generated,
    law_question,
    math_question,
)

REPO = Path(__file__).resolve().parent.parent
TASKS = """\
tasks:
  - name: arithmetic
    description: Everyday arithmetic word problems, answered with one number.
    format: number
  - name: law
    description: Multiple-choice questions about which legal doctrine decides a dispute.
    format: multiple_choice
"""
POLICY = """\
providers:
  fake: {{type: openai, base_url: "{url}/v1"}}
models:
  writer: {{provider: fake, cost: {{input_per_mtok: 1, output_per_mtok: 2}}}}
  mathy: {{provider: fake, cost: {{input_per_mtok: 3, output_per_mtok: 6}}}}
  lawyer: {{provider: fake, cost: {{input_per_mtok: 3, output_per_mtok: 6}}}}
  gen-a: {{provider: fake, cost: {{input_per_mtok: 0.5, output_per_mtok: 1}}}}
  gen-b: {{provider: fake, cost: {{input_per_mtok: 0.5, output_per_mtok: 1}}}}
decisions:
  - {{name: default, when: true, route: {{candidates: [mathy]}}}}
"""
SERVING = """\
providers:
  mock: {{type: mock}}
models:
  mathy: {{provider: mock}}
  lawyer: {{provider: mock}}
  gen-a: {{provider: mock}}
  gen-b: {{provider: mock}}
decisions:
  - name: learned
    when: true
    route: {{candidates: [mathy, lawyer, gen-a, gen-b], algorithm: cascal, params: {{artifact: "{artifact}"}}}}
"""


@pytest.fixture
def upstream() -> Iterator[GenerateUpstream]:
    with GenerateUpstream() as up:
        yield up


def command(folder: Path, url: str, per_task: int, *extra: str) -> list[str]:
    (folder / "policy.yaml").write_text(POLICY.format(url=url))
    (folder / "tasks.yaml").write_text(TASKS)
    return [
        "generate",
        "--config", str(folder / "policy.yaml"),
        "--tasks", str(folder / "tasks.yaml"),
        "--generator", "writer",
        "--pool", ",".join(POOL),
        "--per-task", str(per_task),
        "--out", str(folder / "data.jsonl"),
        "--dedup-threshold", "0.999",  # the fake's templated questions are alike by design
        "--backoff", "0.01",
        "--quiet",
        *extra,
    ]  # fmt: skip


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_then_cascal_routes_by_skill(tmp_path: Path, upstream: GenerateUpstream) -> None:
    assert main(command(tmp_path, upstream.base_url, 60)) == 0
    data = rows(tmp_path / "data.jsonl")
    ids = [str(r["id"]) for r in data]
    assert len(ids) == len(set(ids)) > 40
    for row in data:
        assert "scores" not in row
        assert list(row["responses"]) == list(POOL)  # type: ignore[call-overload]
        assert all(c > 0 for c in row["costs"].values())  # type: ignore[attr-defined]
    # What the filters must have dropped: repeats (i % 10 == 5), wrong keys (i % 7 == 3)
    # and warm-ups every model gets right (i % 9 == 8).
    for i in (5, 15, 3, 10, 8, 26):
        assert f"arithmetic-{i:05d}" not in ids
        assert f"law-{i:05d}" not in ids
    report = json.loads((tmp_path / "data.report.json").read_text())
    total = report["total"]
    assert total["requested"] == 120
    assert total["near_duplicate"] == 12
    assert total["generator_disagrees"] >= 8
    assert total["unanimous"] >= 4
    assert total["no_majority"] > 0  # both generalists wrong on a question
    assert total["rows"] == len(data)
    assert sum(total[k] for k in total if k != "requested") == 120
    assert report["calls"]["retries"] > 0
    assert report["calls"]["failed"] == 0
    assert report["dollars_all_runs"] == pytest.approx(report["dollars_this_run"])
    assert report["dollars_this_run"] > 0

    artifact = tmp_path / "cascal"
    assert main(["train", "--algorithm", "cascal", "--data", str(tmp_path / "data.jsonl"),
                 "--out", str(artifact), "--quiet"]) == 0  # fmt: skip
    config, _ = load_config_text(SERVING.format(artifact=artifact), env={})
    pipeline = Pipeline.build(config)

    def routed(prompt: str) -> str:
        return asyncio.run(pipeline.route(RequestContext.from_prompt(prompt))).model

    fresh = range(200, 212)  # never generated
    assert [routed(math_question(i)[0]) for i in fresh] == ["mathy"] * len(fresh)
    assert [routed(law_question(i)[0]) for i in fresh] == ["lawyer"] * len(fresh)


def _records(journal: Path) -> int:
    if not journal.exists():
        return 0
    text = journal.read_text()
    return text.count('"kind":"query"') + text.count('"kind":"answer"')


def _run_until_held(args: list[str], upstream: GenerateUpstream, journal: Path) -> None:
    """Start the CLI, wait until the server holds every further call and every answered
    call is in the journal, then kill -9 it."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "router_proxy", *args], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (upstream.held() and _records(journal) == upstream.answered_total()):
            assert process.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < deadline, "the run never reached the hold"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_killed_and_resumed_runs_repeat_no_call_and_lose_no_row(
    tmp_path: Path, upstream: GenerateUpstream
) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    assert main(command(reference, upstream.base_url, 10)) == 0
    upstream.clear()

    folder = tmp_path / "resumed"
    folder.mkdir()
    args = command(folder, upstream.base_url, 10, "--concurrency", "4")
    journal = folder / "data.jsonl.journal"
    upstream.block_after(8)  # killed while generating (20 generator calls in all)
    _run_until_held(args, upstream, journal)
    assert _records(journal) == 8
    upstream.block_after(12 + 20)  # the other 12 queries, then into the answers
    _run_until_held(args, upstream, journal)
    assert 20 < _records(journal) < 20 + 4 * 20
    upstream.block_after(None)
    done = subprocess.run(
        [sys.executable, "-m", "router_proxy", *args],
        env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    repeated = {call: n for call, n in upstream.answered.items() if n != 1}
    assert repeated == {}
    writer_calls = sum(n for (model, _), n in upstream.answered.items() if model == "writer")
    assert writer_calls == 20
    assert (folder / "data.jsonl").read_bytes() == (reference / "data.jsonl").read_bytes()
    ids = [r["id"] for r in rows(folder / "data.jsonl")]
    assert len(ids) == len(set(ids)) > 0
    assert generated("arithmetic", 0)[0] in (folder / "data.jsonl").read_text()
