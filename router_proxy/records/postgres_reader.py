"""Records read back from the postgres sink's table (records/postgres.py), as the same
dicts a JSONL file holds: the columns and ``extra`` merged back into one record, ``time``
as unix seconds, and the keys a served or shadow record always carries present (null
when their column is).

``postgresql://user@host:5432/db?table=analytics.router_records`` names the source: a
libpq URL (its other query parameters, e.g. ``sslmode``, go to libpq; the password is
best left to PGPASSWORD or ~/.pgpass) with the table as ``table`` (default
``router_records``, the sink's). Rows stream through a server-side cursor, in batches,
in the order they were inserted, in one read-only transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from router_proxy.records.config import TABLE_PATTERN, PostgresSinkConfig
from router_proxy.records.postgres import COLUMNS, EXTRA
from router_proxy.records.source import EVERYTHING, RecordSourceError, Window, is_database

if TYPE_CHECKING:
    import psycopg

BATCH = 2000  # rows per round trip of the server-side cursor
CONNECT_TIMEOUT = 10  # seconds, unless the URL says otherwise
DEFAULT_TABLE: str = PostgresSinkConfig.model_fields["table"].default
# Columns read back as record fields; the token counts are copies of `usage` (in extra).
_FIELDS = tuple(name for name, _ in COLUMNS if name not in ("prompt_tokens", "completion_tokens"))
# Keys each record kind always carries (null when they were): a NULL column gives them
# back as null; other NULL columns (a served record's content) are left out.
_ALWAYS = {
    "served": (
        "surface",
        "decision",
        "signals",
        "candidates",
        "model",
        "attempts",
        "usage",
        "cost_usd",
        "latency_ms",
        "status",
        "trace_id",
    ),
    "shadow": ("decision", "model", "answer", "usage", "cost_usd", "latency_ms", "status"),
}


def record_of(row: dict[str, Any]) -> dict[str, Any]:
    """The record a row was written from (the inverse of ``postgres.row``)."""
    record = {name: row[name] for name in _FIELDS if row[name] is not None and name != "extra"}
    record["time"] = row["time"].timestamp()
    record.update(row["extra"] or {})
    for key in _ALWAYS.get(record.get("kind", ""), ()):
        record.setdefault(key, None)
    return record


@dataclass(frozen=True)
class PostgresSource:
    dsn: str  # for libpq: the URL without `table`
    table: str
    name: str  # the URL as given, its password masked: what messages name

    @classmethod
    def parse(cls, url: str) -> PostgresSource:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        tables = [value for key, value in query if key == "table"]
        table = tables[-1] if tables else DEFAULT_TABLE
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        name = urlunsplit(parts._replace(netloc=netloc))
        if not re.match(TABLE_PATTERN, table):
            raise RecordSourceError(f"{name}: not a table name: {table!r}")
        rest = urlencode([(key, value) for key, value in query if key != "table"])
        return cls(urlunsplit(parts._replace(query=rest)), table, name)

    def open(self, window: Window = EVERYTHING, *, served_only: bool = False) -> RecordStream:
        """Connect and start the query (errors now, naming the source); the rows stream
        as the result is iterated. ``served_only``: served records (what replay reads);
        else every record of the requests in ``window``."""
        try:
            import psycopg
        except ImportError:
            raise RecordSourceError(
                f"{self.name}: reading records from PostgreSQL needs psycopg: "
                f"pip install 'router-proxy[{EXTRA}]'"
            ) from None
        options: dict[str, Any] = {"application_name": "router-proxy records reader"}
        if "connect_timeout" not in self.dsn:
            options["connect_timeout"] = CONNECT_TIMEOUT
        try:
            connection = psycopg.connect(self.dsn, **options)
        except psycopg.Error as exc:
            raise RecordSourceError(f"{self.name}: cannot connect: {_line(exc)}") from None
        connection.read_only = True
        stream = RecordStream(self, connection)
        try:
            stream.start(*self._query(window, served_only))
        except BaseException:
            stream.close()
            raise
        return stream

    def _query(self, window: Window, served_only: bool) -> tuple[Any, list[Any]]:
        from psycopg import sql

        table = sql.Identifier(*self.table.split("."))
        bounds: list[sql.Composable] = []
        params: list[Any] = []
        if window.since is not None:
            bounds.append(sql.SQL("time >= to_timestamp(%s)"))
            params.append(window.since)
        if window.until is not None:
            bounds.append(sql.SQL("time < to_timestamp(%s)"))
            params.append(window.until)
        served: list[sql.Composable] = [sql.SQL("kind = 'served'")]
        where: list[sql.Composable]
        if served_only:
            where = served + bounds
        elif bounds:
            # Whole requests: every record of a request whose served record is in the
            # window (its shadow records may be written after `until`).
            chosen = sql.SQL("SELECT request_id FROM {} WHERE {}").format(
                table, sql.SQL(" AND ").join(served + bounds)
            )
            where = [sql.SQL("request_id IN ({})").format(chosen)]
        else:
            where = []
        columns = sql.SQL(", ").join(sql.Identifier(name) for name in _FIELDS)
        query = sql.SQL("SELECT {} FROM {}").format(columns, table)
        if where:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        return query + sql.SQL(" ORDER BY id"), params


class RecordStream:
    """The records of one query, read in batches; a context manager that closes the
    connection."""

    def __init__(self, source: PostgresSource, connection: psycopg.Connection[Any]) -> None:
        self.source = source
        self.connection = connection
        self.cursor: psycopg.ServerCursor[dict[str, Any]] | None = None

    def start(self, query: Any, params: list[Any]) -> None:
        import psycopg
        from psycopg.rows import dict_row

        cursor = self.connection.cursor(name="router_records_read", row_factory=dict_row)
        cursor.itersize = BATCH
        try:
            cursor.execute(query, params)
        except psycopg.errors.UndefinedTable:
            raise RecordSourceError(f"{self.source.name}: no table {self.source.table}") from None
        except psycopg.Error as exc:
            raise RecordSourceError(
                f"{self.source.name}: table {self.source.table}: {_line(exc)}"
            ) from None
        self.cursor = cursor

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import psycopg

        assert self.cursor is not None, "start() first"
        try:
            for row in self.cursor:
                yield record_of(row)
        except psycopg.Error as exc:
            raise RecordSourceError(f"{self.source.name}: {_line(exc)}") from None

    def close(self) -> None:
        self.connection.close()  # the read-only transaction ends with it

    def __enter__(self) -> RecordStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _line(exc: BaseException) -> str:
    """The first line of a libpq message (the rest is hints on other lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_databases(
    specs: Iterable[str], stack: ExitStack, window: Window = EVERYTHING, *, served_only: bool
) -> list[RecordStream]:
    """The streams of the database URLs among ``specs`` (files and folders are the
    caller's), each closed with ``stack``."""
    return [
        stack.enter_context(PostgresSource.parse(spec).open(window, served_only=served_only))
        for spec in specs
        if is_database(spec)
    ]
