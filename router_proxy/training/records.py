"""Decision records (served + shadow, shared_formats.md) -> wide routing rows.

A request's records share its ``request_id``: the served record carries the prompt and
the answering model's answer (only when its decision opts content in), each shadow record
another model's answer to the same request. A cascade's or aggregate's served record
carries every call it made (``calls``): each call that answered the client's question
(``role: answer``) is an answer of its model, so such traffic yields wide rows without
shadow calls; a verifier's verdict and a refiner's answer (written from the others) are
not. Joined, they are one wide row: the answers as ``responses``, the measured
``cost_usd`` as ``costs``, and no ``scores`` (nobody labelled live traffic). Failed calls
(status not 200, not ``ok``, no answer) are left out. A model answering twice for one
request counts once: the request's own call over a shadow call (what the traffic paid
for, whatever order the records come in), and the earliest of its own calls.

Training needs the same models in every row, so the row set is cut to one model pool:
the models that answered in at least ``coverage`` of the multi-answer requests; rows
missing one of them are dropped (e.g. a shadow call dropped for the budget). The report
says how many were kept and why the rest were not. Rows carry no ``task`` (a decision
mixes tasks, and a task makes the answer format one per task): each row's answer format
is detected from its own prompt and answers.

``consensus_labels``: for selectors that learn from ``scores`` (knn, mf), each model's
agreement with the consensus answer (training/consensus.py) stands in for a label, 1 or 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from router_proxy.records.source import EVERYTHING, Window
from router_proxy.training.answers import extract_rows
from router_proxy.training.consensus import consensus
from router_proxy.training.dataset import DatasetError, RoutingRow

COVERAGE = 0.9


@dataclass
class JoinReport:
    requests: int = 0  # distinct request ids seen
    without_prompt: int = 0  # no served record with a prompt (content not opted in)
    single_answer: int = 0  # served only (not shadowed, or every shadow call failed)
    incomplete: int = 0  # multi-answer, but lacking one of the pool's models
    rows: int = 0
    models: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"records: {self.requests} requests -> {self.rows} rows over "
            f"{len(self.models)} models ({', '.join(self.models)})",
            f"left out: {self.without_prompt} without prompt (content not recorded), "
            f"{self.single_answer} with one answer, {self.incomplete} missing a pool model",
        ]


def record_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and every ``*.jsonl`` under the directories named, sorted."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.jsonl") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetError(f"{path}: no such file or directory")
    return files


def read_records(paths: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    for path in record_files(paths):
        with path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{number}: not JSON ({exc})") from None
                if isinstance(record, dict):
                    yield record


Answer = tuple[str, float | None]  # the text, its cost in US$


@dataclass
class _Request:
    prompt: str | None = None
    time: float | None = None  # of the served record (None: none was read)
    served: dict[str, Answer] = field(default_factory=dict)  # the request's own calls'
    shadow: dict[str, Answer] = field(default_factory=dict)
    responses: dict[str, str] = field(default_factory=dict)  # both, once all are read
    costs: dict[str, float] = field(default_factory=dict)

    def merge(self) -> None:
        for model, (text, cost) in (self.shadow | self.served).items():
            self.responses[model] = text
            if cost is not None:
                self.costs[model] = cost


def join_records(
    records: Iterable[dict[str, Any]], coverage: float = COVERAGE, window: Window = EVERYTHING
) -> tuple[list[RoutingRow], JoinReport]:
    """Wide rows (in the order of the requests' times) and what was left out; with a
    bounded ``window``, only the requests whose served record is in it (with all their
    shadow records)."""
    requests: dict[str, _Request] = {}
    for record in records:
        request_id, kind = record.get("request_id"), record.get("kind")
        if not isinstance(request_id, str) or kind not in ("served", "shadow"):
            continue
        request = requests.setdefault(request_id, _Request())
        if kind == "served":
            prompt = record.get("prompt")
            request.prompt = prompt if isinstance(prompt, str) else None
            request.time = float(record.get("time") or 0.0)
            _add_served(request.served, record)
        else:
            _add_answer(request.shadow, record)
    if window.bounded:
        requests = {k: r for k, r in requests.items() if window.holds(r.time)}
    for request in requests.values():
        request.merge()
    report = JoinReport(requests=len(requests))
    answered = []
    for request_id, request in requests.items():
        if request.prompt is None:
            report.without_prompt += 1
        elif len(request.responses) < 2:
            report.single_answer += 1
        else:
            answered.append((request_id, request))
    seen = Counter(m for _, r in answered for m in r.responses)
    pool = [m for m, n in seen.most_common() if n >= coverage * len(answered)]
    report.models = sorted(pool)
    rows = []
    for request_id, request in sorted(answered, key=lambda item: item[1].time or 0.0):
        if not all(m in request.responses for m in pool):
            report.incomplete += 1
            continue
        rows.append(
            RoutingRow(
                id=request_id,
                prompt=request.prompt or "",
                costs={m: request.costs[m] for m in report.models if m in request.costs},
                responses={m: request.responses[m] for m in report.models},
            )
        )
    report.rows = len(rows)
    return rows, report


def _add_served(answers: dict[str, Answer], record: dict[str, Any]) -> None:
    """A multi-call request's answers are its calls' (the one returned among them, unless
    a refiner wrote it; each call's own ``ok`` says whether it answered, whatever became
    of the request); any other's is the answering model's."""
    calls = record.get("calls")
    if not isinstance(calls, list):
        _add_answer(answers, record)
    else:
        for call in calls:
            if _answered(call) and call.get("model") not in answers:  # its earliest call
                _add_answer(answers, call)


def _answered(call: Any) -> bool:
    """A call that answered the client's question (not a verdict, not a refined answer)."""
    return isinstance(call, dict) and call.get("role") == "answer" and bool(call.get("ok"))


def _add_answer(answers: dict[str, Answer], record: dict[str, Any]) -> None:
    model, answer = record.get("model"), record.get("answer")
    if record.get("status", 200) != 200 or not isinstance(model, str):
        return
    if not isinstance(answer, str):
        return
    cost = record.get("cost_usd")
    answers[model] = (answer, float(cost) if isinstance(cost, int | float) else None)


def consensus_labels(rows: Sequence[RoutingRow], models: Sequence[str]) -> list[RoutingRow]:
    """``rows`` with ``scores``: 1.0 where a model gave the consensus answer, else 0.0."""
    votes = consensus(extract_rows(rows, models))
    return [
        replace(row, scores={m: float(votes.agrees[i, j]) for j, m in enumerate(models)})
        for i, row in enumerate(rows)
    ]


def row_json(row: RoutingRow) -> dict[str, Any]:
    """A wide row as ``router-proxy train --data`` reads it (empty fields left out)."""
    data: dict[str, Any] = {"id": row.id, "prompt": row.prompt}
    if row.task:
        data["task"] = row.task
    for key in ("scores", "costs", "responses"):
        value = getattr(row, key)
        if value:
            data[key] = value
    if row.format:
        data["format"] = row.format
    return data


def write_rows(rows: Iterable[RoutingRow], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row_json(row)) + b"\n")
    return out


@dataclass(frozen=True)
class Judged:
    """Held-out rows scored by consensus: rows x models 0/1 labels, and how often the
    judge agrees with true labels where the data (or ``labels``) has them."""

    models: list[str]
    scores: list[list[float]]
    agreement: float | None  # share of (row, model) pairs with a true label judged alike
    labelled: int  # such pairs


def judge_by_consensus(
    rows: Sequence[RoutingRow], models: Sequence[str], labels: dict[str, dict[str, float]]
) -> Judged:
    """``labels``: true scores by prompt (e.g. RouterBench's), beside the rows' own."""
    votes = consensus(extract_rows(rows, models))
    agree = total = 0
    for i, row in enumerate(rows):
        truth = row.scores or labels.get(row.prompt, {})
        for j, model in enumerate(models):
            if model in truth:
                total += 1
                agree += int(bool(votes.agrees[i, j]) == (truth[model] >= 0.5))
    scores = votes.agrees.astype(float).tolist()
    return Judged(list(models), scores, agree / total if total else None, total)


def labels_by_prompt(paths: Iterable[str | Path]) -> dict[str, dict[str, float]]:
    """True ``scores`` of wide rows, by prompt text (to judge the judge)."""
    from router_proxy.training.dataset import load_rows

    return {row.prompt: row.scores for row in load_rows(paths) if row.scores}
