"""The part every sink shares: a bounded queue the event loop puts records in, and one
writer thread that takes them out in batches and writes them.

``write`` never waits: a full queue (the file system or database is behind) drops the
record and counts it. A batch that fails to write is dropped and counted too (and
logged, at most once a minute): records are an observation, never a reason for a request
to fail or wait.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

logger = logging.getLogger("router_proxy.records")

Record = Mapping[str, Any]
# Work done in the writer thread before a record is written: redaction, the answer's
# text from its raw bytes.
Finish = Callable[[Record], Record]
Queued = tuple[Record, Finish | None, int]  # the record, its finish, its content's bytes
ERROR_LOG_SECONDS = 60.0
DEFAULT_QUEUED_BYTES = 256 * 1024 * 1024
CLOSE_TIMEOUT = 30.0  # seconds close() waits for the writer to write what is queued


@dataclass(frozen=True, slots=True)
class Counters:
    """Where the writer reports (the Prometheus counters; tests may count themselves)."""

    written: Callable[[str, int], None]  # (sink, records)
    dropped: Callable[[str, str, int], None]  # (sink, reason, records)


def _ignore(*_: object) -> None:
    return None


NO_COUNTERS = Counters(_ignore, _ignore)


class QueuedWriter(ABC):
    """A sink's queue and writer thread; subclasses write batches (``write_batch``).

    The queue is a deque the loop appends to without a lock or a wake-up (a thread woken
    for every record costs the loop more than the record does); the writer wakes every
    ``flush_seconds``, or when a whole batch is waiting, and writes all there is."""

    kind: ClassVar[str]  # the `type:` of its config, and the metrics' `sink` label

    def __init__(
        self,
        *,
        queue_size: int,
        batch_size: int,
        flush_seconds: float,
        max_queued_bytes: int = DEFAULT_QUEUED_BYTES,
        prepare: Finish | None = None,
        counters: Counters = NO_COUNTERS,
    ) -> None:
        self._pending: deque[Queued] = deque()
        self.queue_size = queue_size
        self.max_queued_bytes = max_queued_bytes
        self._queued_bytes = 0  # content held by queued records (their `weight`)
        self._bytes_lock = threading.Lock()
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.prepare = prepare  # applied to every record (the section's redaction)
        self.counters = counters
        self.closed = False
        self._wake = threading.Event()
        self._last_error_log = -ERROR_LOG_SECONDS
        self._thread = threading.Thread(target=self._run, name=f"records-{self.kind}", daemon=True)
        self._thread.start()

    def write(self, record: Record) -> None:
        """A finished record (a shadow call's): its answer counts against
        ``max_queued_bytes`` like a served record's content, so a burst of shadow
        answers cannot hold more than that while the writer is behind."""
        answer = record.get("answer")
        self.write_with(record, None, len(answer) if isinstance(answer, str) else 0)

    def write_with(self, record: Record, finish: Finish | None, weight: int = 0) -> None:
        """``write``, with ``finish`` run on the record in the writer thread first;
        ``weight``: the bytes of content it holds (prompt, messages, answer), counted
        against ``max_queued_bytes`` until it is written."""
        pending = self._pending
        if self.closed:
            self.counters.dropped(self.kind, "closed", 1)
        elif len(pending) >= self.queue_size or (weight and not self._hold(weight)):
            self.counters.dropped(self.kind, "overflow", 1)
        else:
            pending.append((record, finish, weight))  # deque.append: atomic, no lock
            if len(pending) == self.batch_size:
                self._wake.set()

    def _hold(self, weight: int) -> bool:
        with self._bytes_lock:
            if self._queued_bytes + weight > self.max_queued_bytes:
                return False
            self._queued_bytes += weight
            return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        self._thread.join(CLOSE_TIMEOUT)
        if self._thread.is_alive():  # a writer stuck that long: give up on what is queued
            logger.error("records writer (%s) did not drain; closing without it", self.kind)

    @abstractmethod
    def write_batch(self, records: list[Record]) -> None:
        """Write ``records`` (in the writer thread); raise to have them counted dropped."""

    @abstractmethod
    def close_target(self) -> None:
        """Release the file or connection (in the writer thread, after the last batch)."""

    def _run(self) -> None:
        while not self.closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._drain()
        self._drain()  # what came in while the last batch was written
        try:
            self.close_target()
        except Exception:
            logger.exception("closing the records sink (%s) failed", self.kind)

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            batch = [pending.popleft() for _ in range(min(self.batch_size, len(pending)))]
            self._flush(batch)
            held = sum(weight for _, _, weight in batch)
            if held:
                with self._bytes_lock:
                    self._queued_bytes -= held

    def _flush(self, batch: list[Queued]) -> None:
        records = []
        for record, finish, _ in batch:
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
