"""JSON log lines: one object per line, so log pipelines need no parsing rules.

Request logs carry ids, routing outcome, timings, tokens and cost; never prompts,
replies, client keys or provider keys.

Lines are written to stdout by one writer thread (``JsonLinesWriter``), off the event
loop: a synchronous write and flush per request cost the loop ~9% of its time, and a
slow log pipe would stall every client. Lines reach stdout within ``FLUSH_SECONDS``.
The per-request line (``log_request``) skips the logging module's record machinery
(~11 µs a line, measured) when the writer is its
only destination; with any other handler attached (a test's capture, an embedding
application's own) it goes through ``logging`` like every other line.
"""

from __future__ import annotations

import atexit
import logging
import logging.config
import sys
import threading
import time
from collections import deque
from typing import Any, TextIO

import orjson

ACCESS_LOGGER = "router_proxy.access"
access_log = logging.getLogger(ACCESS_LOGGER)


_second: list[tuple[int, str]] = [(-1, "")]  # the last second formatted, and its text


def _timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds; strftime once per second, not once per line."""
    second = int(created)
    last, text = _second[0]
    if second != last:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second[0] = (second, text)
    return f"{text}.{int(created * 1000) % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry["event"] = record.getMessage()
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


FLUSH_SECONDS = 0.05


class JsonLinesWriter(logging.Handler):
    """Collects lines; a thread writes what has collected every ``FLUSH_SECONDS``, in one
    write and flush.

    The thread wakes on a timer, never per line: waking it for each request (a queue it
    blocked on) cost ~90 µs of latency per request at one connection, the two threads
    trading the GIL. A request line is formatted on the loop (orjson, ~2 µs) so the
    thread holds the GIL only for the write; other records (rare) are formatted there.
    """

    def __init__(self, stream: TextIO, flush_seconds: float = FLUSH_SECONDS) -> None:
        super().__init__()
        self.stream = stream
        self.formatter = JsonFormatter()
        self._pending: deque[str | logging.LogRecord] = deque()  # thread-safe appends
        self._stop = threading.Event()
        self._flush_seconds = flush_seconds
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # the lines still pending are written before exit

    def emit(self, record: logging.LogRecord) -> None:
        self._pending.append(record)

    def put_request(self, fields: dict[str, Any]) -> None:
        head = {"ts": _timestamp(time.time()), "level": "info", "logger": ACCESS_LOGGER}
        line = orjson.dumps(head | {"event": "request"} | fields, default=str)
        self._pending.append(line.decode() + "\n")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        super().close()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        lines: list[str] = []
        pending = self._pending
        while pending:
            item = pending.popleft()
            lines.append(item if isinstance(item, str) else self._line(item))
        if lines:
            self._write("".join(lines))

    def _line(self, record: logging.LogRecord) -> str:
        try:
            return self.format(record) + "\n"
        except Exception as exc:  # a line that cannot be written must not stop the rest
            return (
                orjson.dumps({"level": "error", "message": f"unloggable: {exc!r}"}).decode() + "\n"
            )

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed or broken: nothing left to tell


def queued_stdout() -> logging.Handler:
    """The ``dictConfig`` factory of the stdout handler (workers build it from the dict)."""
    return JsonLinesWriter(sys.stdout)


def logging_config(level: str = "info") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` schema for JSON lines on stdout. uvicorn applies it
    in each worker process (``log_config=``), so workers log exactly like one process."""
    root_level = logging.getLevelName(level.upper())
    if not isinstance(root_level, int):
        raise ValueError(f"unknown log level {level!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stdout": {"()": queued_stdout}},
        "root": {"level": root_level, "handlers": ["stdout"]},
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error")},
            # watchfiles logs every change in the policy's folder (any file) at INFO; the
            # reloader logs the reloads that matter.
            "watchfiles": {"level": max(logging.WARNING, root_level)},
        },
    }


def configure_logging(level: str = "info") -> None:
    logging.config.dictConfig(logging_config(level))


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def log_request(fields: dict[str, Any]) -> None:
    """The one line per request (``event: request``), at INFO on the access logger."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    writer = _sole_writer()
    if writer is not None:
        writer.put_request(fields)
    else:
        access_log.info("request", extra={"fields": fields})


def _sole_writer() -> JsonLinesWriter | None:
    """The writer, when a line on the access logger would reach it and nothing else."""
    logger: logging.Logger | None = access_log
    while logger is not None and logger is not logging.root:
        if logger.handlers or logger.filters or not logger.propagate:
            return None
        logger = logger.parent
    handlers = logging.root.handlers
    if len(handlers) != 1 or logging.root.filters:
        return None
    writer = handlers[0]
    if not isinstance(writer, JsonLinesWriter) or writer.filters:
        return None
    return writer
