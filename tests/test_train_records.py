"""``router-proxy train --records``: decision records (served + shadow) -> wide rows ->
an artifact the gateway serves; ``router-proxy eval --judge consensus`` with the judge's
agreement with true labels."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest

from router_proxy.cli import main
from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.pipeline import Pipeline
from router_proxy.training.records import consensus_labels, join_records
from tests.support.records import MODELS, records, write_jsonl


def test_join_keeps_multi_answer_rows_and_says_what_it_left_out() -> None:
    recs, _ = records(30)
    recs = [dict(r) for r in recs]
    # req-0-0: its prompt was not recorded; req-0-1: not shadowed; req-0-2: a shadow failed.
    recs = [r for r in recs if not (r["request_id"] == "req-0-1" and r["kind"] == "shadow")]
    for r in recs:
        if r["request_id"] == "req-0-0" and r["kind"] == "served":
            del r["prompt"]
        if r["request_id"] == "req-0-2" and r["kind"] == "shadow" and r["model"] == "mathy":
            r.update(status=502, answer=None, error="upstream_error")
    rows, report = join_records(recs)
    assert report.requests == 30
    assert report.without_prompt == 1
    assert report.single_answer == 1
    assert report.incomplete == 1  # two answers, but the pool is all three models
    assert report.rows == len(rows) == 27
    assert report.models == sorted(MODELS)
    row = rows[0]
    assert set(row.responses) == set(MODELS)
    assert row.scores == {}  # nobody labelled live traffic
    assert row.costs == {"strong": 0.004, "mathy": 0.001, "guess": 0.0002}


def test_consensus_labels_follow_the_majority() -> None:
    rows, report = join_records(records(60)[0])
    labelled = consensus_labels(rows, report.models)
    strong = [r.scores["strong"] for r in labelled]
    assert sum(strong) / len(strong) > 0.9  # always right: nearly always the consensus


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("records")
    recs, _ = records(240)
    # Two record files, as a rotating sink leaves them; records of one request may be in
    # different files.
    write_jsonl(folder / "records" / "a.jsonl", recs[: len(recs) // 2])
    write_jsonl(folder / "records" / "b.jsonl", recs[len(recs) // 2 :])
    held, held_labels = records(80, seed=7)
    write_jsonl(folder / "heldout-records.jsonl", held)
    write_jsonl(folder / "labels.jsonl", held_labels)
    return folder


def test_train_cascal_from_records_serves(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wide, out = recorded / "wide.jsonl", recorded / "cascal"
    code = main(
        [
            "train",
            "--algorithm",
            "cascal",
            "--records",
            str(recorded / "records"),
            "--out",
            str(out),
            "--wide-out",
            str(wide),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    rows = [orjson.loads(line) for line in wide.read_bytes().splitlines()]
    assert len(rows) == 240
    assert "scores" not in rows[0]
    assert set(rows[0]["responses"]) == set(MODELS)
    assert "240 requests -> 240 rows" in capsys.readouterr().err
    # The artifact serves: a policy routes with it.
    policy = f"""
providers: {{mock: {{type: mock}}}}
models: {{strong: {{provider: mock}}, mathy: {{provider: mock}}, guess: {{provider: mock}}}}
decisions:
  - name: default
    when: true
    route: {{candidates: [strong, mathy, guess], algorithm: cascal, params: {{artifact: "{out}"}}}}
"""
    config, _ = load_config_text(policy)
    plan = asyncio.run(Pipeline.build(config).route(RequestContext.from_prompt("Question 3")))
    assert plan.model in MODELS
    assert plan.model != "guess"  # never the consensus' least reliable model


def test_train_knn_from_records_uses_consensus_labels(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "train",
            "--algorithm",
            "knn",
            "--records",
            str(recorded / "records"),
            "--out",
            str(recorded / "knn"),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err


def test_train_from_records_without_shadow_answers_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = [r for r in records(10)[0] if r["kind"] == "served"]
    path = write_jsonl(tmp_path / "r.jsonl", served)
    code = main(
        [
            "train",
            "--algorithm",
            "cascal",
            "--records",
            str(path),
            "--out",
            str(tmp_path / "a"),
            "--quiet",
        ]
    )
    assert code == 1
    assert "shadow sampling" in capsys.readouterr().err


def test_eval_with_the_consensus_judge_reports_its_agreement(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (recorded / "cascal").exists():
        main(
            [
                "train",
                "--algorithm",
                "cascal",
                "--records",
                str(recorded / "records"),
                "--out",
                str(recorded / "cascal"),
                "--quiet",
            ]
        )
    held = recorded / "heldout.jsonl"
    assert (
        main(
            [
                "train",
                "--algorithm",
                "cascal",
                "--records",
                str(recorded / "heldout-records.jsonl"),
                "--out",
                str(recorded / "unused"),
                "--wide-out",
                str(held),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = main(
        [
            "eval",
            "--router",
            str(recorded / "cascal"),
            "--data",
            str(held),
            "--judge",
            "consensus",
            "--labels",
            str(recorded / "labels.jsonl"),
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["judge"]["kind"] == "consensus"
    assert report["judge"]["labelled_pairs"] == 80 * 3
    assert report["judge"]["agreement_with_labels"] > 0.8
    assert set(report["baselines"]["single"]) == set(MODELS)  # every single model
    code = main(
        [
            "eval",
            "--router",
            str(recorded / "cascal"),
            "--data",
            str(held),
            "--judge",
            "consensus",
            "--quiet",
        ]
    )
    assert code == 0
    assert "agreement with true labels" in capsys.readouterr().out
