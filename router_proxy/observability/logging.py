"""JSON log lines: one object per line, so log pipelines need no parsing rules.

Request logs carry ids, routing outcome, timings, tokens and cost; never prompts,
replies, client keys or provider keys."""

from __future__ import annotations

import logging
import logging.config
import time
from typing import Any

import orjson

ACCESS_LOGGER = "router_proxy.access"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
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


def logging_config(level: str = "info") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` schema for JSON lines on stdout. uvicorn applies it
    in each worker process (``log_config=``), so workers log exactly like one process."""
    root_level = logging.getLevelName(level.upper())
    if not isinstance(root_level, int):
        raise ValueError(f"unknown log level {level!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
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
