"""Routing data in the "wide" JSONL format (one object per line), read natively:

    {"id": "...", "task": "arc_challenge", "prompt": "...",
     "scores":    {"model-a": 1.0, "model-b": 0.0},      # quality 0..1 (optional)
     "costs":     {"model-a": 0.0053, "model-b": 0.0001}, # US$ for that call (optional)
     "responses": {"model-a": "B", "model-b": "C"}}       # raw answers (optional)

Label-trained selectors (kNN, MF) read ``scores``; query-only ones (CASCAL) read only
``prompt`` and ``responses`` and must never touch ``scores``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson


class DatasetError(ValueError):
    """A data file that cannot be used, with the file and line."""


@dataclass(frozen=True)
class RoutingRow:
    id: str
    prompt: str
    task: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    responses: dict[str, str] = field(default_factory=dict)
    # The answers' format when the data declares it (``router-proxy generate`` writes the
    # task's); empty: query-only trainers detect it from the prompt and responses.
    format: str = ""


ANSWER_FORMATS = frozenset({"choice", "number", "code", "text"})


def _row(data: object, where: str) -> RoutingRow:
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
        raise DatasetError(f"{where}: expected an object with a string `prompt`")

    def mapping(key: str, kind: type) -> dict[str, object]:
        value = data.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(v, kind) for v in value.values()):
            raise DatasetError(f"{where}: `{key}` must map model names to {kind.__name__}s")
        return value

    scores = {k: float(v) for k, v in mapping("scores", int | float).items()}  # type: ignore[arg-type]
    costs = {k: float(v) for k, v in mapping("costs", int | float).items()}  # type: ignore[arg-type]
    responses = {k: str(v) for k, v in mapping("responses", str).items()}
    fmt = data.get("format", "")
    if fmt and fmt not in ANSWER_FORMATS:
        raise DatasetError(f"{where}: `format` must be one of {sorted(ANSWER_FORMATS)}")
    return RoutingRow(
        id=str(data.get("id", where)),
        prompt=data["prompt"],
        task=str(data.get("task", "")),
        scores=scores,
        costs=costs,
        responses=responses,
        format=str(fmt),
    )


def read_rows(path: str | Path) -> list[RoutingRow]:
    rows = []
    with Path(path).open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{number}: not JSON ({exc})") from None
                rows.append(_row(data, f"{path}:{number}"))
    return rows


def load_rows(paths: Iterable[str | Path]) -> list[RoutingRow]:
    return [row for path in paths for row in read_rows(path)]


def data_hash(paths: Sequence[str | Path]) -> str:
    """SHA-256 over the files' bytes, in order: what an artifact was trained on."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def models_of(rows: Sequence[RoutingRow], field_name: str = "scores") -> list[str]:
    """Models present in every row's ``field_name``, in first-seen order."""
    if not rows:
        return []
    common = set(getattr(rows[0], field_name))
    for row in rows[1:]:
        common &= set(getattr(row, field_name))
    return [m for m in getattr(rows[0], field_name) if m in common]
