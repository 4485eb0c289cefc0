"""The part every sink shares: a bounded queue the event loop puts records in, and one
writer thread that takes them out in batches and writes them.

``write`` never waits: a full queue (the file system or database is behind) drops the
record and counts it. A batch that fails to write is dropped and counted too (and
logged, at most once a minute): records are an observation, never a reason for a request
to fail or wait.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

logger = logging.getLogger("router_proxy.records")

Record = Mapping[str, Any]
# Work done in the writer thread before a record is written: redaction, the answer's
# text from its raw bytes.
Finish = Callable[[Record], Record]
ERROR_LOG_SECONDS = 60.0
CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Counters:
    """Where the writer reports (the Prometheus counters; tests may count themselves)."""

    written: Callable[[str, int], None]  # (sink, records)
    dropped: Callable[[str, str, int], None]  # (sink, reason, records)


def _ignore(*_: object) -> None:
    return None


NO_COUNTERS = Counters(_ignore, _ignore)
_STOP: Any = object()


class QueuedWriter(ABC):
    """A sink's queue and writer thread; subclasses write batches (``write_batch``)."""

    kind: ClassVar[str]  # the `type:` of its config, and the metrics' `sink` label

    def __init__(
        self,
        *,
        queue_size: int,
        batch_size: int,
        flush_seconds: float,
        prepare: Finish | None = None,
        counters: Counters = NO_COUNTERS,
    ) -> None:
        self._queue: queue.Queue[tuple[Record, Finish | None]] = queue.Queue(queue_size)
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.prepare = prepare  # applied to every record (the section's redaction)
        self.counters = counters
        self.closed = False
        self._last_error_log = -ERROR_LOG_SECONDS
        self._thread = threading.Thread(target=self._run, name=f"records-{self.kind}", daemon=True)
        self._thread.start()

    def write(self, record: Record) -> None:
        self.write_with(record, None)

    def write_with(self, record: Record, finish: Finish | None) -> None:
        """``write``, with ``finish`` run on the record in the writer thread first."""
        if self.closed:
            self.counters.dropped(self.kind, "closed", 1)
            return
        try:
            self._queue.put_nowait((record, finish))
        except queue.Full:
            self.counters.dropped(self.kind, "overflow", 1)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._queue.put((_STOP, None), timeout=CLOSE_TIMEOUT)
        except queue.Full:  # a writer stuck for that long: give up on what is queued
            logger.error("records writer (%s) did not drain; closing without it", self.kind)
            return
        self._thread.join(CLOSE_TIMEOUT)

    @abstractmethod
    def write_batch(self, records: list[Record]) -> None:
        """Write ``records`` (in the writer thread); raise to have them counted dropped."""

    @abstractmethod
    def close_target(self) -> None:
        """Release the file or connection (in the writer thread, after the last batch)."""

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[Record, Finish | None]] = []
            item = self._queue.get()
            deadline = time.monotonic() + self.flush_seconds
            while True:
                if item[0] is _STOP:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= self.batch_size:
                    break
                left = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._flush(batch)
        try:
            self.close_target()
        except Exception:
            logger.exception("closing the records sink (%s) failed", self.kind)

    def _flush(self, batch: list[tuple[Record, Finish | None]]) -> None:
        records = []
        for record, finish in batch:
            try:
                records.append(self._finished(record, finish))
            except Exception as exc:  # one odd record costs only itself
                self._failed(1, exc)
        if not records:
            return
        try:
            self.write_batch(records)
        except Exception as exc:  # the writer thread must live on: count, log, go on
            self._failed(len(records), exc)
            return
        self.counters.written(self.kind, len(records))

    def _failed(self, count: int, exc: Exception) -> None:
        self.counters.dropped(self.kind, "error", count)
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_SECONDS:
            self._last_error_log = now
            logger.error("writing %d records (%s) failed: %r", count, self.kind, exc)

    def _finished(self, record: Record, finish: Finish | None) -> Record:
        if finish is not None:
            record = finish(record)
        return self.prepare(record) if self.prepare is not None else record
