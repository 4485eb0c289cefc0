"""A cascade replayed on recorded rows: which calls it makes, whose answer it returns.

Each row carries every model's recorded response, score and cost, so a cascade's run on
it can be simulated exactly as the gateway runs it (``shared formats``, issue 15): stage
by stage, every model of a stage is called (its cost counted, answer kept or discarded);
after a stage that is not the last, if the final answers of all its models agree (and
none is missing) the stage's first model's answer is returned, else the next stage runs;
the last stage's first model's answer is returned without a check. The returned
answer's score is the score of the model whose answer is returned.

Agreement is decided the way the gateway decides it, from the prompt and the stage's
responses only (``answers/extract.py``: the format detected from the prompt and those
responses; code answers grouped by similarity). Nothing here reads a row's ``task``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from router_proxy.answers.extract import (
    CODE_SIMILARITY,
    Format,
    detect_format,
    extract,
    group_code,
    options_of,
)
from router_proxy.training.dataset import RoutingRow

Stages = tuple[tuple[str, ...], ...]
Vector = npt.NDArray[np.float64]


class AnswerTable:
    """Final answers of recorded responses, extracted lazily and cached per row."""

    def __init__(self, rows: Sequence[RoutingRow], code_similarity: float = CODE_SIMILARITY):
        self.rows = rows
        self.code_similarity = code_similarity
        self._options: dict[int, dict[str, str]] = {}
        self._answers: dict[tuple[int, str, Format], str | None] = {}
        self._agree: dict[tuple[int, tuple[str, ...], float | None], bool] = {}
        self._code: dict[tuple[int, tuple[str, ...]], bool] = {}

    def options(self, row: int) -> dict[str, str]:
        if row not in self._options:
            self._options[row] = options_of(self.rows[row].prompt)
        return self._options[row]

    def answer(self, row: int, model: str, fmt: Format) -> str | None:
        key = (row, model, fmt)
        if key not in self._answers:
            response = self.rows[row].responses.get(model)
            options = self.options(row) if fmt == "choice" else None
            self._answers[key] = None if response is None else extract(response, fmt, "", options)
        return self._answers[key]

    def agrees(
        self, row: int, models: tuple[str, ...], code_similarity: float | None = None
    ) -> bool:
        """Whether the final answers of ``models`` on ``row`` all agree (none missing);
        code answers are grouped at ``code_similarity`` (the table's when None)."""
        similarity = self.code_similarity if code_similarity is None else code_similarity
        key = (row, models, similarity if self.is_code(row, models) else None)
        if key not in self._agree:
            self._agree[key] = self._compare(row, models, similarity)
        return self._agree[key]

    def is_code(self, row: int, models: tuple[str, ...]) -> bool:
        """Whether the answers of ``models`` on ``row`` are compared as code (only then
        does the similarity threshold matter)."""
        key = (row, models)
        if key not in self._code:
            self._code[key] = self._format(row, models) == "code"
        return self._code[key]

    def _format(self, row: int, models: tuple[str, ...]) -> Format | None:
        record = self.rows[row]
        if any(m not in record.responses for m in models):
            return None
        if len(self.options(row)) >= 2:
            return "choice"  # what detect_format decides first, without the responses
        return detect_format(record.prompt, [record.responses[m] for m in models])

    def _compare(self, row: int, models: tuple[str, ...], similarity: float) -> bool:
        fmt = self._format(row, models)
        if fmt is None:
            return False
        answers = [self.answer(row, m, fmt) for m in models]
        if fmt == "code":
            answers = group_code(answers, similarity)
        return answers[0] is not None and all(a == answers[0] for a in answers)


@dataclass(frozen=True)
class Outcome:
    """Per row: the returned answer's score, the cost of every call, the number of calls."""

    quality: Vector
    cost: Vector  # US$ per request
    calls: Vector


Agreement = Callable[[tuple[str, ...], npt.NDArray[np.intp]], npt.NDArray[np.bool_]]


def table_agreement(table: AnswerTable) -> Agreement:
    """Agreement of a stage on some rows, row by row from ``table`` (cached there)."""

    def agree(stage: tuple[str, ...], rows: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        return np.array([table.agrees(int(r), stage) for r in rows], dtype=bool)

    return agree


def replay(
    stages: Stages,
    agree: Agreement,
    rows: Sequence[int] | npt.NDArray[np.intp],
    scores: npt.NDArray[np.floating],
    costs: npt.NDArray[np.floating],
    column: dict[str, int],
) -> Outcome:
    """``stages`` run on each of ``rows`` (``scores``/``costs``: all rows x models)."""
    index = np.asarray(rows, dtype=np.intp)
    quality = np.zeros(len(index))
    cost = np.zeros(len(index))
    calls = np.zeros(len(index))
    open_ = np.ones(len(index), dtype=bool)  # rows still running
    for number, stage in enumerate(stages):
        cols = [column[m] for m in stage]
        cost[open_] += costs[index[open_]][:, cols].sum(axis=1)
        calls[open_] += len(stage)
        if number == len(stages) - 1:
            stop = open_
        else:
            stop = open_.copy()
            stop[open_] = agree(stage, index[open_])
        quality[stop] = scores[index[stop], cols[0]]
        open_ &= ~stop
    return Outcome(quality, cost, calls)


def replay_rows(
    plans: Sequence[Stages],
    agree: Agreement,
    scores: npt.NDArray[np.floating],
    costs: npt.NDArray[np.floating],
    column: dict[str, int],
) -> Outcome:
    """Row r replays ``plans[r]`` (the plan an artifact chose for it)."""
    groups: dict[Stages, list[int]] = {}
    for row, plan in enumerate(plans):
        groups.setdefault(plan, []).append(row)
    n = len(plans)
    out = Outcome(np.zeros(n), np.zeros(n), np.zeros(n))
    for plan, members in groups.items():
        part = replay(plan, agree, members, scores, costs, column)
        out.quality[members], out.cost[members], out.calls[members] = (
            part.quality,
            part.cost,
            part.calls,
        )
    return out
