"""Where records go: anything with ``write`` (never blocks the event loop, never raises)
and ``close`` (flush what is queued; blocking, so call it off the loop).

Served records (the gateway's) and shadow records (live learning's background calls)
go through the same sink: ``Runtime.record_sink`` is the running config's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RecordSink(Protocol):
    def write(self, record: Mapping[str, Any]) -> None:
        """Queue ``record`` (a JSON-able mapping) for writing; drops it (counted) when the
        writer is behind. Returns at once and never raises."""

    def close(self) -> None:
        """Write what is queued and release the file or connection (blocking)."""
