"""Final answers of routing rows, for query-only consensus (CASCAL).

Extraction itself lives in ``router_proxy/answers/extract.py`` (the gateway's cascades
use it too). A row's ``format`` field, when the data declares one (``router-proxy
generate`` writes its task's), is used as is; otherwise the format is detected per row
from the prompt and responses (``detect_format``), and per task by majority when rows
carry a task (``task_formats``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from router_proxy.answers.extract import (
    CODE_SIMILARITY,
    FORMATS,
    Format,
    detect_format,
    extract,
    group_code,
    options_of,
)
from router_proxy.training.dataset import RoutingRow

__all__ = ["CODE_SIMILARITY", "Format", "extract_rows", "task_formats"]


def task_formats(rows: Sequence[RoutingRow]) -> list[Format]:
    """Each row's format: the one it declares, else the majority of its task's per-row
    detections (rows without a task keep their own)."""
    own = [_declared(r) or detect_format(r.prompt, list(r.responses.values())) for r in rows]
    votes: dict[str, Counter[Format]] = {}
    for row, fmt in zip(rows, own, strict=True):
        if row.task:
            votes.setdefault(row.task, Counter())[fmt] += 1
    return [
        fmt if row.format or not row.task else votes[row.task].most_common(1)[0][0]
        for row, fmt in zip(rows, own, strict=True)
    ]


def _declared(row: RoutingRow) -> Format | None:
    return next((f for f in FORMATS if f == row.format), None)


def extract_rows(
    rows: Sequence[RoutingRow], models: Sequence[str], code_similarity: float = CODE_SIMILARITY
) -> list[list[str | None]]:
    """rows x models final answers (None where a model gave no usable answer); code
    answers are grouped by similarity (``group_code``)."""
    table = []
    for row, fmt in zip(rows, task_formats(rows), strict=True):
        options = options_of(row.prompt) if fmt == "choice" else None
        answers = [
            extract(row.responses[m], fmt, options=options) if m in row.responses else None
            for m in models
        ]
        table.append(group_code(answers, code_similarity) if fmt == "code" else answers)
    return table
