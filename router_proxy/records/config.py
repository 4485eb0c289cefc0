"""The YAML contract of decision records: the top-level ``records:`` section.

Absent, nothing is recorded and no request pays for it. Present, every request is
recorded with probability ``sample_rate`` (a decision may say otherwise under
``decisions:``), as one JSON object written by the sink, off the event loop.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from router_proxy.config.base import StrictModel
from router_proxy.plugins.redact_pii import RedactOptions

# A table name, optionally schema-qualified (analytics.router_records).
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"


class JsonlSinkConfig(StrictModel):
    """JSON lines in a file, rotated by size and/or age; the newest ``keep`` rotated
    files are kept beside it."""

    type: Literal["jsonl"] = "jsonl"
    path: str = Field(
        default="records/records.jsonl",
        min_length=1,
        description="the file written now (relative to the working directory; its folder "
        "is created); `{pid}` is replaced by the process id: use it with "
        "`serve --workers N`, one file per worker",
    )
    max_bytes: int | None = Field(
        default=100 * 1024 * 1024,
        ge=1024,
        description="rotate once the file would grow past this many bytes (null: never for size)",
    )
    rotate_seconds: float | None = Field(
        default=None, gt=0, description="rotate a file this old (null: never for age)"
    )
    keep: int = Field(
        default=10, ge=1, description="rotated files kept (named FILE.<UTC time>.jsonl)"
    )


class PostgresSinkConfig(StrictModel):
    """Rows in a PostgreSQL table (created if missing), inserted in batches."""

    type: Literal["postgres"]
    dsn: SecretStr = Field(
        description="libpq connection string or URL, e.g. ${RECORDS_DSN} "
        "(postgresql://user:pass@host:5432/db)"
    )
    table: str = Field(default="router_records", pattern=TABLE_PATTERN)
    connect_timeout: float = Field(default=5.0, gt=0, description="seconds per connection try")

    @model_validator(mode="after")
    def _client_installed(self) -> PostgresSinkConfig:
        if importlib.util.find_spec("psycopg") is None:
            raise ValueError(
                "the postgres sink needs psycopg: pip install 'router-proxy[records-postgres]'"
            )
        return self


SinkConfig = Annotated[JsonlSinkConfig | PostgresSinkConfig, Field(discriminator="type")]


class DecisionRecordsConfig(StrictModel):
    """One decision's own sampling (unset fields: the section's)."""

    sample_rate: float | None = Field(default=None, ge=0, le=1)
    content: bool | None = None


class RecordsConfig(StrictModel):
    """``records:``: which requests are recorded, with what, and where."""

    sink: SinkConfig = Field(default_factory=JsonlSinkConfig)
    sample_rate: float = Field(
        default=1.0, ge=0, le=1, description="share of requests recorded (0..1)"
    )
    content: bool = Field(
        default=False,
        description="also record the prompt (the last user turn), the messages and the "
        "answer; `router-proxy replay` needs them",
    )
    redact: bool | RedactOptions = Field(
        default=False,
        description="mask personal data in recorded content (the redact_pii plugin's "
        "detectors and options); a decision with the redact_pii plugin always has its "
        "content masked by that plugin",
    )
    decisions: dict[str, DecisionRecordsConfig] = Field(
        default_factory=dict,
        description="per decision name (or `direct`: requests that name a model): its own "
        "sample_rate and content",
    )
    queue_size: int = Field(
        default=10_000,
        ge=1,
        description="records waiting for the writer thread; past this, records are "
        "dropped and counted (router_records_dropped_total), never waited for",
    )
    max_queued_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="content (prompts, messages, answers) of records waiting for the "
        "writer, at most; a record that would pass it is dropped and counted as overflow",
    )
    batch_size: int = Field(default=256, ge=1, description="records written at once, at most")
    flush_seconds: float = Field(
        default=1.0, gt=0, description="a record waits at most this long to be written"
    )
