"""``replay`` and ``train --records`` reading the postgres sink's table (a real server,
started here on a free loopback port): records written by the real sink (or by
``router-proxy serve`` with a postgres sink) read back as the JSONL records they were,
so both commands give the same report and rows from the database as from the file; the
``--since``/``--until`` window picks requests alike in both; a database that cannot be
read is one line naming it, exit status 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from router_proxy.cli import main
from router_proxy.records import postgres_reader
from router_proxy.records.config import PostgresSinkConfig
from router_proxy.records.postgres import PostgresSink
from router_proxy.records.postgres_reader import PostgresSource
from router_proxy.records.source import Window, parse_time
from tests.support.gateway_process import GatewayProcess
from tests.support.postgres_server import PostgresServer, require_postgres
from tests.support.records import records, write_jsonl
from tests.test_records import Tally
from tests.test_replay import CHANGED, PROMPTS, SERVED, serve_and_record

psycopg = pytest.importorskip("psycopg", reason="pip install 'router-proxy[records-postgres]'")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer(require_postgres()) as server:
        yield server


def write_table(dsn: str, table: str, items: list[dict[str, Any]]) -> str:
    """``items`` written through the real sink; the ``--records`` URL of its table."""
    tally = Tally()
    sink = PostgresSink(
        PostgresSinkConfig(type="postgres", dsn=dsn, table=table),
        queue_size=100_000,
        batch_size=500,
        flush_seconds=0.05,
        counters=tally.counters(),
    )
    for item in items:
        sink.write(item)
    sink.close()
    assert tally.written == len(items)
    assert tally.dropped == {}
    return f"{dsn}?table={table}"


def same_records(read: list[dict[str, Any]], written: list[dict[str, Any]]) -> None:
    assert len(read) == len(written)
    for got, want in zip(read, written, strict=True):
        # timestamptz keeps microseconds: the float comes back within one.
        assert got.pop("time") == pytest.approx(want["time"], abs=1e-6)
        assert got == {k: v for k, v in want.items() if k != "time"}


def replay_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["replay", *args, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report: dict[str, Any] = json.loads(captured.out)
    return report


def changed_policy(tmp_path: Path) -> str:
    path = tmp_path / "changed.yaml"
    path.write_text(CHANGED)
    return str(path)


def test_rows_read_back_as_the_records_written(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_reader, "BATCH", 7)  # many round trips of the cursor
    items, _ = records(40)
    items[1] |= {"usage": None, "cost_usd": None, "error": "upstream_error", "status": 502}
    items[0] |= {"messages": [{"role": "user", "content": items[0]["prompt"]}], "stream": True}
    # A cascade's calls (records/calls.py): kept in `extra` (JSONB) and read back as written.
    call = {"stage": 0, "role": "answer", "reason": "agree-fail", "ok": True, "error": None}
    items[3]["calls"] = [
        call | {"model": "guess", "answer": "The answer is B", "cost_usd": 0.0002},
        call | {"model": "judge", "role": "verdict", "answer": None, "usage": None},
    ]
    url = write_table(postgres.dsn, "roundtrip", items)
    with PostgresSource.parse(url).open() as stream:
        assert isinstance(stream.cursor, psycopg.ServerCursor)
        assert stream.cursor.itersize == 7
        same_records(list(stream), items)
    with PostgresSource.parse(url).open(served_only=True) as stream:
        served = list(stream)
    assert [r["request_id"] for r in served] == [f"req-0-{i}" for i in range(40)]
    assert {r["kind"] for r in served} == {"served"}


def test_replay_from_the_database_reports_as_from_the_file(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = serve_and_record(tmp_path, default_content=True)
    items = [orjson.loads(line) for line in jsonl.read_bytes().splitlines()]
    url = write_table(postgres.dsn, "replayed", items)
    policy = changed_policy(tmp_path)
    from_file = replay_json(capsys, "--records", str(jsonl), "--config", policy)
    from_table = replay_json(capsys, "--records", url, "--config", policy)
    assert from_table.pop("files") == [url]
    from_file.pop("files")
    assert from_table == from_file
    assert from_table["served_records"] == 4
    assert from_table["models_changed"] == 2
    # Both sources at once, and a limit on what is replayed.
    both = replay_json(capsys, "--records", str(jsonl), url, "--config", policy)
    assert both["served_records"] == 8
    limited = replay_json(capsys, "--records", url, "--config", policy, "--limit", "3")
    assert limited["served_records"] == 3


def test_serve_with_a_postgres_sink_then_replay_from_it(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl_sink = f'sink: {{type: jsonl, path: "{tmp_path / "unused.jsonl"}"}}'
    policy = SERVED.format(path=tmp_path / "unused.jsonl", default_content="true")
    assert jsonl_sink in policy
    policy = policy.replace(
        jsonl_sink, f'sink: {{type: postgres, dsn: "{postgres.dsn}", table: served_live}}'
    )
    with GatewayProcess(policy, tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="x", max_retries=0)
        for prompt in PROMPTS:
            client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": prompt}]
            )
        gateway.terminate()  # SIGTERM: drained, and the sink flushed and closed
        assert gateway.wait(timeout=30) == 0, gateway.output()
    url = f"{postgres.dsn}?table=served_live"
    report = replay_json(capsys, "--records", url, "--config", changed_policy(tmp_path))
    assert report["served_records"] == report["replayed"] == 4
    assert report["decisions_changed"] == 1  # hello: default -> greeting
    assert report["models_changed"] == 2  # code: coder -> large
    assert {e["prompt"] for e in report["examples"]} == {*PROMPTS[:3]}


def test_replay_window_picks_the_same_requests_from_both(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    items, _ = records(30)  # served at unix 1000 + i, shadows half a second later
    jsonl = write_jsonl(tmp_path / "r.jsonl", items)
    url = write_table(postgres.dsn, "windowed", items)
    policy = changed_policy(tmp_path)
    window = ["--since", "1970-01-01T00:16:50Z", "--until", "1020"]  # [1010, 1020)
    for source in (str(jsonl), url):
        report = replay_json(capsys, "--records", source, "--config", policy, *window)
        assert report["served_records"] == 10, source
        report = replay_json(capsys, "--records", source, "--config", policy, "--since", "1025")
        assert report["served_records"] == 5, source


def train_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, *args: str
) -> list[dict[str, Any]]:
    wide = tmp_path / f"{name}.jsonl"
    out = tmp_path / name
    command = ["train", "--algorithm", "cascal", *args, "--out", str(out), "--quiet"]
    code = main([*command, "--wide-out", str(wide)])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    return [orjson.loads(line) for line in wide.read_bytes().splitlines()]


def test_train_from_the_database_joins_the_rows_of_the_file(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    items, _ = records(120)
    jsonl = write_jsonl(tmp_path / "records.jsonl", items)
    url = write_table(postgres.dsn, "trained", items)
    from_file = train_rows(tmp_path, capsys, "file", "--records", str(jsonl))
    from_table = train_rows(tmp_path, capsys, "table", "--records", url)
    assert len(from_file) == 120
    assert from_table == from_file
    # The window picks requests by their served record: request 69 (served at 1069,
    # its shadows at 1069.5, after `until`) comes with all its answers.
    window = ["--since", "1970-01-01T00:17:30", "--until", "1069.2"]  # [1050, 1069.2)
    from_file = train_rows(tmp_path, capsys, "file-w", "--records", str(jsonl), *window)
    from_table = train_rows(tmp_path, capsys, "table-w", "--records", url, *window)
    assert [row["id"] for row in from_table] == [f"req-0-{i}" for i in range(50, 70)]
    assert from_table == from_file
    assert all(len(row["responses"]) == 3 for row in from_table)
    # A window picks recorded requests: wide rows (--data) have no time.
    command = ["train", "--algorithm", "cascal", "--data", str(tmp_path / "file.jsonl")]
    assert main([*command, "--out", str(tmp_path / "x"), "--since", "1050"]) == 2
    assert "use --records" in capsys.readouterr().err


def test_window_bounds() -> None:
    assert parse_time("1970-01-01") == 0.0
    assert parse_time("1970-01-01T01:00:00+01:00") == 0.0
    assert parse_time("12.5") == 12.5
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("yesterday")
    window = Window(10.0, 20.0)
    assert window.holds(10.0)
    assert window.holds(19.9)
    assert not window.holds(20.0)
    assert not window.holds(9.9)
    assert not window.holds(None)
    assert Window().holds(None)


def test_a_database_that_cannot_be_read_is_one_line_and_status_2(
    tmp_path: Path,
    postgres: PostgresServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = changed_policy(tmp_path)
    out = str(tmp_path / "never")
    unreachable = "postgresql://postgres:s3cret@127.0.0.1:9/postgres?table=router_records"
    cases = [
        (
            unreachable,
            "postgresql://postgres:***@127.0.0.1:9/postgres?table=router_records: cannot connect",
        ),
        (f"{postgres.dsn}?table=nowhere", f"{postgres.dsn}?table=nowhere: no table nowhere"),
        (f"{postgres.dsn}?table=x;drop", "not a table name: 'x;drop'"),
    ]
    for url, message in cases:
        for command in (
            ["replay", "--records", url, "--config", policy, "--quiet"],
            ["train", "--algorithm", "cascal", "--records", url, "--out", out, "--quiet"],
        ):
            assert main(command) == 2, command
            err = capsys.readouterr().err
            assert message in err, err
            assert len(err.strip().splitlines()) == 1, err
            assert "Traceback" not in err
            assert "s3cret" not in err
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    url = f"{postgres.dsn}?table=trained"
    for command in (
        ["replay", "--records", url, "--config", policy, "--quiet"],
        ["train", "--algorithm", "cascal", "--records", url, "--out", out, "--quiet"],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.strip() == (
            f"{command[0]}: {url}: reading records from PostgreSQL needs psycopg: "
            "pip install 'router-proxy[records-postgres]'"
        )
