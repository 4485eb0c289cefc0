"""``sink: {type: jsonl}``: one JSON object per line, in a file rotated by size and/or
age. A rotated file is renamed ``NAME.<UTC time>.jsonl`` beside the live one (names sort
by age) and only the newest ``keep`` of them stay."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from router_proxy.records.config import JsonlSinkConfig
from router_proxy.records.writer import QueuedWriter, Record


def _default(value: Any) -> str:
    return str(value)  # numpy scalars and the like: a record never fails for its type


def encode(record: Record) -> bytes:
    return orjson.dumps(record, default=_default, option=orjson.OPT_NON_STR_KEYS) + b"\n"


class JsonlSink(QueuedWriter):
    kind = "jsonl"

    def __init__(self, config: JsonlSinkConfig, **options: Any) -> None:
        self.config = config
        self.path = Path(config.path.replace("{pid}", str(os.getpid())))
        self._file: IO[bytes] | None = None
        self._size = 0
        self._opened = 0.0
        super().__init__(**options)

    def write_batch(self, records: list[Record]) -> None:
        pending: list[bytes] = []
        size = self._open()
        for record in records:
            line = encode(record)
            if size and self._due(size + len(line)):
                if pending:
                    self._append(b"".join(pending))
                    pending = []
                self._rotate()
                size = self._open()
            pending.append(line)
            size += len(line)
        if pending:
            self._append(b"".join(pending))

    def close_target(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> int:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            self._size = self._file.tell()
            self._opened = time.monotonic()
        return self._size

    def _append(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _due(self, size: int) -> bool:
        """The file must be rotated before it grows to ``size`` bytes."""
        config = self.config
        if config.max_bytes is not None and size > config.max_bytes:
            return True
        age = config.rotate_seconds
        return age is not None and time.monotonic() - self._opened >= age

    def _rotate(self) -> None:
        self.close_target()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.with_name(f"{self.path.stem}.{stamp}{self.path.suffix}")
        if self.path.exists():
            os.replace(self.path, target)
        for old in rotated(self.path)[: -self.config.keep]:
            old.unlink(missing_ok=True)


def rotated(path: Path) -> list[Path]:
    """The rotated files of ``path``, oldest first."""
    return sorted(path.parent.glob(f"{path.stem}.*{path.suffix}"))
