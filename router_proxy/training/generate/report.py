"""What a ``generate`` run did: queries kept and dropped (by task and by reason), calls,
failures, dollars. Written next to the output as ``DATA.report.json`` and printed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from router_proxy.training.generate.calls import Reply
from router_proxy.training.generate.filters import REASONS

# A task's queries, in the order they are accounted for; each lands in exactly one of
# the columns after `requested` (all but `rows` are drops).
STAGES = ("missing", "malformed", "near_duplicate", "incomplete", *REASONS)
COLUMNS = ("requested", *STAGES, "rows")


@dataclass
class Report:
    tasks: dict[str, Counter[str]] = field(default_factory=dict)
    calls: int = 0  # this run's successful calls
    failed: int = 0  # calls that failed for good (not journaled: a re-run retries them)
    retries: int = 0  # transient failures tried again
    without_usage: int = 0
    dollars: float = 0.0  # this run
    dollars_all_runs: float = 0.0  # every call in the journal
    by_model: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # model -> first failure

    def count(self, task: str, what: str, n: int = 1) -> None:
        self.tasks.setdefault(task, Counter())[what] += n

    def paid(self, model: str, reply: Reply) -> None:
        self.calls += 1
        self.dollars += reply.cost
        self.by_model[model] = self.by_model.get(model, 0.0) + reply.cost
        self.without_usage += not reply.usage_known

    def fail(self, model: str, message: str) -> None:
        self.failed += 1
        self.errors.setdefault(model, message)

    def postfix(self, queries: int, retries: int) -> dict[str, object]:
        return {
            "queries": queries,
            "calls": self.calls,
            "errors": self.failed,
            "retries": retries,
            "$": f"{self.dollars:.4f}",
        }

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.tasks.values():
            total.update(counts)
        return total

    def to_json(self, **context: Any) -> dict[str, Any]:
        def table(counts: Counter[str]) -> dict[str, int]:
            return {c: counts[c] for c in COLUMNS}

        return {
            **context,
            "queries": {name: table(c) for name, c in self.tasks.items()},
            "total": table(self.totals()),
            "calls": {
                "this_run": self.calls,
                "failed": self.failed,
                "retries": self.retries,
                "without_usage": self.without_usage,
                "errors": self.errors,
            },
            "dollars_this_run": round(self.dollars, 6),
            "dollars_all_runs": round(self.dollars_all_runs, 6),
            "dollars_this_run_by_model": {m: round(d, 6) for m, d in self.by_model.items()},
        }

    def summary(self) -> str:
        names = list(self.tasks)
        width = max([len(n) for n in names] + [5])
        head = f"{'task':<{width}}" + "".join(f" {c:>{max(len(c), 5)}}" for c in COLUMNS)
        lines = [head]
        for name, counts in [*self.tasks.items(), ("total", self.totals())]:
            cells = "".join(f" {counts[c]:>{max(len(c), 5)}}" for c in COLUMNS)
            lines.append(f"{name:<{width}}{cells}")
        lines.append(
            f"calls this run: {self.calls} ok, {self.failed} failed, {self.retries} retried; "
            f"${self.dollars:.4f} spent this run, ${self.dollars_all_runs:.4f} in all runs"
        )
        lines += [f"  {model} failed: {message}" for model, message in self.errors.items()]
        return "\n".join(lines)
