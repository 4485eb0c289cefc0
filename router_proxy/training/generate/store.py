"""The journal that makes ``generate`` resumable, and the files it writes.

Every finished call (a generated query, one model's answer) is appended to
``DATA.jsonl.journal`` as one JSON line, flushed and fsynced before anything else
happens, so a run killed at any point (even ``kill -9``) keeps every call it was paid
for. A re-run reads the journal and makes only the calls it lacks; query ids are the task
name and an index, so the same query always gets the same id. A torn last line (a kill
mid-write) is cut off; a bad line before it is an error. A lock on the journal keeps two
runs off the same file.

``DATA.jsonl`` is derived from the journal: rows are appended as queries complete, and
the file is rewritten (atomically, in task-then-index order) at the start of a run and at
its end, so an interrupted file is repaired by the next run and rows never repeat.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class JournalError(ValueError):
    """A journal that cannot be resumed (corrupt, in use, or from another setup)."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MetaRecord(_Record):
    kind: Literal["meta"] = "meta"
    generator: str
    tasks: dict[str, str]  # task name -> TaskSpec.fingerprint()


class CallRecord(_Record):
    id: str
    model: str
    text: str
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage: bool = True  # the provider reported token usage (else `cost` is unknown, 0)


class QueryRecord(CallRecord):
    kind: Literal["query"] = "query"
    task: str
    index: int


class AnswerRecord(CallRecord):
    kind: Literal["answer"] = "answer"


Record = Annotated[MetaRecord | QueryRecord | AnswerRecord, Field(discriminator="kind")]
_RECORD: TypeAdapter[MetaRecord | QueryRecord | AnswerRecord] = TypeAdapter(Record)


@dataclass
class JournalState:
    generator: str | None = None
    tasks: dict[str, str] = field(default_factory=dict)
    queries: dict[str, QueryRecord] = field(default_factory=dict)
    answers: dict[tuple[str, str], AnswerRecord] = field(default_factory=dict)

    def add(self, record: MetaRecord | QueryRecord | AnswerRecord) -> None:
        if isinstance(record, MetaRecord):
            self.generator = self.generator or record.generator
            self.tasks = record.tasks | self.tasks
        elif isinstance(record, QueryRecord):
            self.queries.setdefault(record.id, record)
        else:
            self.answers.setdefault((record.id, record.model), record)

    def check(self, generator: str, tasks: dict[str, str]) -> MetaRecord | None:
        """Refuse to resume with another generator or a changed task; the meta record to
        append when this run adds tasks (None when nothing is new)."""
        if self.generator is not None and self.generator != generator:
            raise JournalError(
                f"the journal holds queries by generator '{self.generator}', not '{generator}'"
            )
        changed = sorted(n for n, f in tasks.items() if self.tasks.get(n, f) != f)
        if changed:
            raise JournalError(
                f"task(s) {changed} changed since the journal's queries were written"
            )
        if self.generator == generator and tasks.items() <= self.tasks.items():
            return None
        return MetaRecord(generator=generator, tasks=tasks)

    def spent(self) -> float:
        calls: list[CallRecord] = [*self.queries.values(), *self.answers.values()]
        return sum(c.cost for c in calls)


class Journal:
    """``with Journal(path) as journal:`` locks the file; ``load`` then ``append``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    def __enter__(self) -> Journal:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise JournalError(f"another run is using {self.path}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None

    def load(self) -> JournalState:
        state = JournalState()
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline, else an unended line
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    state.add(_RECORD.validate_json(line))
                except ValidationError as exc:
                    raise JournalError(
                        f"{self.path}:{number}: not a journal record ({exc})"
                    ) from None
        if tail.strip():
            try:
                state.add(_RECORD.validate_json(tail))
            except ValidationError:
                os.truncate(self.path, len(raw) - len(tail))  # torn by a kill mid-write
            else:
                self._write(b"\n")  # complete but unended: end it before appending
        return state

    def append(self, record: MetaRecord | QueryRecord | AnswerRecord) -> None:
        self._write(record.model_dump_json().encode() + b"\n")

    def _write(self, data: bytes) -> None:
        if self._file is None:
            raise RuntimeError("journal used outside its `with` block")
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + ".journal")


def report_path(out: Path) -> Path:
    return out.with_suffix(".report.json")


def write_atomic(path: Path, lines: Iterable[bytes]) -> None:
    """Replace ``path`` with ``lines`` (each one JSON value) in one rename."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as fh:
        for line in lines:
            fh.write(line + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class RowWriter:
    """Appends rows to the output as queries complete (the journal is the truth; the
    file is rewritten whole at the start and end of a run)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    def __enter__(self) -> RowWriter:
        self._file = self.path.open("ab")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, row: dict[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError("row writer used outside its `with` block")
        self._file.write(dumps(row) + b"\n")
        self._file.flush()
