"""Where ``replay`` and ``train --records`` read records from: JSONL files and folders,
or a PostgreSQL records table named by URL (``postgresql://user@host/db?table=T``), and
the time window (``--since``/``--until``) that picks the requests they read.

The window picks *requests* by their served record's ``time`` (when the request
started): a request in it comes with all its shadow records, even one written after
``until``, so a window never splits a request's answers.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DATABASE_SCHEMES = ("postgresql://", "postgres://")


class RecordSourceError(Exception):
    """A source that cannot be read: one line, naming the source (no password)."""


def is_database(spec: str) -> bool:
    return spec.startswith(DATABASE_SCHEMES)


def parse_time(text: str) -> float:
    """Unix seconds of an ISO 8601 date or time (no zone: UTC), or of a plain number
    (unix seconds); for argparse's ``type=``."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time or unix seconds: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def time_argument(text: str) -> float:
    """``parse_time`` for argparse: a bad value is a usage error that says why."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class Window:
    """``since <= time < until`` (unix seconds); None: unbounded on that side."""

    since: float | None = None
    until: float | None = None

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def holds(self, time: Any) -> bool:
        if not self.bounded:
            return True
        if not isinstance(time, int | float):
            return False  # a record without a time is in no window
        if self.since is not None and time < self.since:
            return False
        return self.until is None or time < self.until


EVERYTHING = Window()
