"""The recorder a config asks for: its sink opened (``type:`` -> the module of that
name), or the running one kept when a reload leaves the sink's settings as they were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from router_proxy.records.config import RecordsConfig
from router_proxy.records.jsonl import JsonlSink
from router_proxy.records.postgres import PostgresSink
from router_proxy.records.recorder import Recorder
from router_proxy.records.redaction import redact, redactor
from router_proxy.records.writer import NO_COUNTERS, Counters, Finish, QueuedWriter

SINKS: dict[str, Callable[..., QueuedWriter]] = {"jsonl": JsonlSink, "postgres": PostgresSink}
# What a running sink was opened with: a reload that changes none of it keeps the sink.
_SINK_FIELDS = ("sink", "redact", "queue_size", "max_queued_bytes", "batch_size", "flush_seconds")


def build_recorder(
    config: RecordsConfig | None,
    counters: Counters = NO_COUNTERS,
    previous: Recorder | None = None,
) -> Recorder | None:
    """None without a ``records:`` section (nothing recorded, nothing paid)."""
    if config is None:
        return None
    if previous is not None and _same_sink(previous.config, config):
        return Recorder(config, previous.sink)
    return Recorder(config, open_sink(config, counters))


def open_sink(config: RecordsConfig, counters: Counters = NO_COUNTERS) -> QueuedWriter:
    """The section's sink, its writer thread started."""
    plugin = redactor(config.redact)
    prepare: Finish | None = None
    if plugin is not None:

        def prepare(record: Any) -> Any:
            return redact(record, plugin)

    return SINKS[config.sink.type](
        config.sink,
        queue_size=config.queue_size,
        batch_size=config.batch_size,
        flush_seconds=config.flush_seconds,
        max_queued_bytes=config.max_queued_bytes,
        prepare=prepare,
        counters=counters,
    )


def _same_sink(old: RecordsConfig, new: RecordsConfig) -> bool:
    return all(getattr(old, name) == getattr(new, name) for name in _SINK_FIELDS)
