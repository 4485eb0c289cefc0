"""``sink: {type: postgres}``: rows in a PostgreSQL table, inserted in batches by the
writer thread over one connection (psycopg 3; the ``records-postgres`` extra).

The table is created if missing: the fields a platform team filters and groups on are
columns (time, decision, model, status, cost, tokens), the nested ones JSONB (signals,
candidates, attempts), and whatever else a record holds goes in ``extra`` (JSONB), so a
new field never needs a migration. A lost connection is opened again for the next batch;
the batch that failed is dropped and counted.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import orjson

from router_proxy.records.config import PostgresSinkConfig
from router_proxy.records.writer import QueuedWriter, Record

if TYPE_CHECKING:
    import psycopg

EXTRA = "records-postgres"
# (column, SQL type); `time` is the record's unix seconds as a timestamptz.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("kind", "text NOT NULL"),
    ("request_id", "text NOT NULL"),
    ("time", "timestamptz NOT NULL"),
    ("surface", "text"),
    ("decision", "text"),
    ("model", "text"),
    ("status", "integer"),
    ("cost_usd", "double precision"),
    ("latency_ms", "double precision"),
    ("prompt_tokens", "integer"),
    ("completion_tokens", "integer"),
    ("trace_id", "text"),
    ("signals", "jsonb"),
    ("candidates", "jsonb"),
    ("attempts", "jsonb"),
    ("prompt", "text"),
    ("answer", "text"),
    ("extra", "jsonb"),
)
_JSONB = frozenset({"signals", "candidates", "attempts", "extra"})
_TOP = frozenset(name for name, _ in COLUMNS) - {"prompt_tokens", "completion_tokens", "extra"}


def available() -> bool:
    return importlib.util.find_spec("psycopg") is not None


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def row(record: Record) -> tuple[Any, ...]:
    """The table's columns for one record (served or shadow)."""
    from psycopg.types.json import Jsonb

    usage = record.get("usage") or {}
    extra = {k: v for k, v in record.items() if k not in _TOP and k != "usage"}
    if usage:
        extra["usage"] = usage
    values: dict[str, Any] = {name: record.get(name) for name in _TOP}
    values["prompt_tokens"] = usage.get("prompt_tokens")
    values["completion_tokens"] = usage.get("completion_tokens")
    values["extra"] = extra
    return tuple(
        Jsonb(values[name], dumps=_dumps)
        if name in _JSONB and values[name] is not None
        else values[name]
        for name, _ in COLUMNS
    )


class PostgresSink(QueuedWriter):
    kind = "postgres"

    def __init__(self, config: PostgresSinkConfig, **options: Any) -> None:
        from psycopg import sql

        self.config = config
        table = sql.Identifier(*config.table.split("."))
        index = config.table.replace(".", "_")
        names = sql.SQL(", ").join(sql.Identifier(name) for name, _ in COLUMNS)
        values = sql.SQL(", ").join(
            sql.SQL("to_timestamp(%s)") if name == "time" else sql.Placeholder()
            for name, _ in COLUMNS
        )
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in COLUMNS
        )
        self._create = [
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, {})").format(
                table, columns
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (time)").format(
                sql.Identifier(f"{index}_time"), table
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (request_id)").format(
                sql.Identifier(f"{index}_request_id"), table
            ),
        ]
        self._insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(table, names, values)
        self._connection: psycopg.Connection[Any] | None = None
        super().__init__(**options)

    def write_batch(self, records: list[Record]) -> None:
        rows = [row(record) for record in records]
        connection = self._connect()
        try:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(self._insert, rows)  # one round of the pipeline
        except Exception:
            self.close_target()  # open a fresh connection for the next batch
            raise

    def close_target(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._connection is None or self._connection.closed:
            connection = psycopg.connect(
                self.config.dsn.get_secret_value(),
                autocommit=True,
                connect_timeout=max(1, round(self.config.connect_timeout)),
                application_name="router-proxy records",
            )
            for statement in self._create:
                connection.execute(statement)
            self._connection = connection
        return self._connection
