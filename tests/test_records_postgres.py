"""The PostgreSQL records sink against a real server (started here on a free loopback
port): the table is created, every surface's record lands as a row with JSONB columns,
a batch is one transaction, and a server that goes away costs dropped records, never a
failed request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from router_proxy.config.load import load_config_text
from router_proxy.records.config import PostgresSinkConfig
from router_proxy.records.postgres import PostgresSink
from router_proxy.server.app import create_app
from tests.support.postgres_server import PostgresServer, require_postgres
from tests.support.serving import ServerThread
from tests.test_records import MOCK_POLICY, NO_UPSTREAM, Tally

psycopg = pytest.importorskip("psycopg", reason="pip install 'router-proxy[records-postgres]'")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer(require_postgres()) as server:
        yield server


def rows(dsn: str, table: str, columns: str = "*") -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as connection:
        cursor = connection.cursor(row_factory=psycopg.rows.dict_row)
        return list(cursor.execute(f"SELECT {columns} FROM {table} ORDER BY id"))


def policy(dsn: str, table: str, **section: Any) -> str:
    options = {
        "sink": {"type": "postgres", "dsn": dsn, "table": table},
        "content": True,
        "flush_seconds": 0.05,
    } | section
    return MOCK_POLICY + "records: " + orjson.dumps(options).decode() + "\n"


def test_served_records_become_rows(postgres: PostgresServer) -> None:
    config, _ = load_config_text(policy(postgres.dsn, "served"), env=NO_UPSTREAM)
    with ServerThread(create_app(config)) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
        answer = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "python please"}]
        )
        list(client.responses.create(model="auto", input="stream it", stream=True))
    # Stopped: the sink has written everything queued and closed its connection.
    first, second = rows(postgres.dsn, "served")
    assert first["request_id"] == answer._request_id
    assert first["kind"] == "served"
    assert first["surface"] == "chat"
    assert first["decision"] == "coding"
    assert first["model"] == "large"
    assert first["status"] == 200
    assert first["signals"] == {"code": True, "quiet": False, "secret": False}  # JSONB
    assert first["candidates"] == ["large", "small"]
    assert first["attempts"] == [["large", None]]
    assert first["prompt_tokens"] == answer.usage.prompt_tokens  # type: ignore[union-attr]
    assert first["cost_usd"] > 0
    assert first["time"].year >= 2025
    assert first["prompt"] == "python please"
    assert first["answer"] == "[large] You said: python please"
    assert first["extra"]["messages"] == [{"role": "user", "content": "python please"}]
    assert first["extra"]["requested_model"] == "auto"
    assert second["surface"] == "responses"
    assert second["answer"] == "[small] You said: stream it"
    # Analytics read it with plain SQL over the JSONB columns.
    coding = rows(postgres.dsn, "served WHERE (signals->>'code')::boolean", "decision")
    assert coding == [{"decision": "coding"}]


def test_shadow_records_share_the_table(postgres: PostgresServer) -> None:
    tally = Tally()
    sink = PostgresSink(
        PostgresSinkConfig(type="postgres", dsn=postgres.dsn, table="analytics_shadow"),
        queue_size=1000,
        batch_size=50,
        flush_seconds=0.05,
        counters=tally.counters(),
    )
    shadow = {
        "v": 1,
        "kind": "shadow",
        "request_id": "r1",
        "time": 1.8e9,
        "decision": "coding",
        "model": "small",
        "answer": "42",
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        "cost_usd": 1e-6,
        "latency_ms": 12.5,
        "status": 200,
        "error": None,
    }
    for n in range(120):
        sink.write({**shadow, "request_id": f"r{n}"})
    sink.close()
    assert tally.written == 120
    assert tally.dropped == {}
    found = rows(postgres.dsn, "analytics_shadow")
    assert [r["request_id"] for r in found] == [f"r{n}" for n in range(120)]
    assert found[0]["kind"] == "shadow"
    assert found[0]["answer"] == "42"
    assert found[0]["completion_tokens"] == 1
    assert found[0]["extra"]["error"] is None


def test_a_server_that_is_gone_costs_records_not_requests() -> None:
    port_nobody_uses = "postgresql://postgres@127.0.0.1:9/postgres"
    config, _ = load_config_text(policy(port_nobody_uses, "lost"), env=NO_UPSTREAM)
    app = create_app(config)
    with ServerThread(app) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
        answer = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.choices[0].message.content == "[small] You said: hello"
    text = app.state.slot.current.metrics.exposition().decode()
    assert 'router_records_dropped_total{reason="error",sink="postgres"} 1.0' in text
