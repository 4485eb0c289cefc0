"""One ``generate`` run: generate -> drop malformed and near-duplicate queries -> answer
-> filter -> rows, resumable through the journal (``store.py``).

The generator's calls all come first (deduplication compares each query with the ones
before it, in task-then-index order, so the verdicts do not depend on which call
finished first); then every kept query goes to every pool model. Both phases run
``concurrency`` calls at a time with a progress bar on stderr. Calls that fail for good
are counted, not journaled: the next run tries them again.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router_proxy.config.schema import Config
from router_proxy.embeddings.registry import build_encoder
from router_proxy.training.extra import require_tqdm
from router_proxy.training.generate.answering import answer_messages, pool_answers
from router_proxy.training.generate.calls import CallFailed, Messages, ModelPool, Reply, RetryPolicy
from router_proxy.training.generate.filters import FilterSettings, verdict
from router_proxy.training.generate.generation import (
    Draft,
    generation_messages,
    near_duplicates,
    query_id,
    read_draft,
)
from router_proxy.training.generate.report import Report
from router_proxy.training.generate.store import (
    AnswerRecord,
    Journal,
    JournalState,
    QueryRecord,
    RowWriter,
    dumps,
    journal_path,
    write_atomic,
)
from router_proxy.training.generate.tasks import TaskSpec

if TYPE_CHECKING:
    from tqdm import tqdm

Job = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class GenerateOptions:
    generator: str
    pool: tuple[str, ...]
    per_task: int
    out: Path
    concurrency: int = 8
    dedup_threshold: float = 0.95
    temperature: float = 0.8  # the generator's (the paper's setting)
    answer_temperature: float = 0.0
    max_tokens: int = 1024
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    filters: FilterSettings = field(default_factory=FilterSettings)
    progress: bool = True


def _fields(reply: Reply) -> dict[str, Any]:
    return {
        "text": reply.text,
        "cost": reply.cost,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "usage": reply.usage_known,
    }


@dataclass
class Run:
    options: GenerateOptions
    tasks: list[TaskSpec]
    journal: Journal
    state: JournalState
    pool: ModelPool
    report: Report = field(default_factory=Report)
    bar: tqdm[Any] | None = None

    async def _call(
        self, model: str, messages: Messages, temperature: float, tag: str
    ) -> Reply | None:
        reply: Reply | None = None
        try:
            reply = await self.pool.complete(
                model,
                messages,
                temperature=temperature,
                max_tokens=self.options.max_tokens,
                tag=tag,
            )
        except CallFailed as exc:
            self.report.fail(model, str(exc))
        else:
            self.report.paid(model, reply)
        if self.bar is not None:
            self.bar.update(1)
            postfix = self.report.postfix(len(self.state.queries), self.pool.retries)
            self.bar.set_postfix(postfix, refresh=False)
        return reply

    async def _all(self, desc: str, jobs: list[Job]) -> None:
        self.bar = require_tqdm("router-proxy generate")(
            total=len(jobs),
            desc=desc,
            unit="call",
            file=sys.stderr,
            disable=not self.options.progress or not jobs,
        )
        try:
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(job())
        finally:
            self.bar.close()
            self.bar = None

    async def _generate_one(self, task: TaskSpec, index: int) -> None:
        qid, generator = query_id(task.name, index), self.options.generator
        messages = generation_messages(task, index, self.options.per_task)
        reply = await self._call(generator, messages, self.options.temperature, qid)
        if reply is not None:
            record = QueryRecord(
                id=qid, model=generator, task=task.name, index=index, **_fields(reply)
            )
            self.journal.append(record)
            self.state.add(record)

    async def generate_queries(self) -> None:
        jobs: list[Job] = [
            partial(self._generate_one, task, i)
            for task in self.tasks
            for i in range(self.options.per_task)
            if query_id(task.name, i) not in self.state.queries
        ]
        await self._all("generating", jobs)

    def drafts(self, encoder_of: Callable[[], Any]) -> list[Draft]:
        """The well-formed, distinct queries (counting the others), in id order."""
        drafts: list[Draft] = []
        for task in self.tasks:
            self.report.count(task.name, "requested", self.options.per_task)
            for i in range(self.options.per_task):
                record = self.state.queries.get(query_id(task.name, i))
                if record is None:
                    self.report.count(task.name, "missing")
                    continue
                draft = read_draft(record.id, task, record.text)
                if draft.problem is not None:
                    self.report.count(task.name, "malformed")
                else:
                    drafts.append(draft)
        if not drafts:
            return []
        dropped = near_duplicates(drafts, encoder_of(), self.options.dedup_threshold)
        for draft in drafts:
            if draft.id in dropped:
                self.report.count(draft.task.name, "near_duplicate")
        return [d for d in drafts if d.id not in dropped]

    def judge(self, draft: Draft) -> tuple[dict[str, Any] | None, str]:
        """The query's row, or None and why not ('incomplete' or a filter's reason)."""
        records = [self.state.answers.get((draft.id, m)) for m in self.options.pool]
        done = [r for r in records if r is not None]
        if len(done) < len(records):
            return None, "incomplete"
        key, answers = pool_answers(draft.task, draft.question, draft.key, [r.text for r in done])
        reason = verdict(key, answers, self.options.filters)
        if reason is not None:
            return None, reason
        row = {
            "id": draft.id,
            "task": draft.task.name,
            "format": draft.task.answer_format.extract_as,
            "prompt": draft.question,
            "costs": {r.model: r.cost for r in done if r.usage},
            "responses": {r.model: r.text for r in done},
        }
        return row, "rows"

    async def _answer_one(self, draft: Draft, model: str, writer: RowWriter) -> None:
        messages = answer_messages(draft.task, draft.question)
        tag = f"{draft.id}:{model}"
        reply = await self._call(model, messages, self.options.answer_temperature, tag)
        if reply is None:
            return
        record = AnswerRecord(id=draft.id, model=model, **_fields(reply))
        self.journal.append(record)
        self.state.add(record)
        row, _ = self.judge(draft)
        if row is not None:
            writer.write(row)

    async def answer_queries(self, drafts: list[Draft]) -> None:
        self.write_rows(drafts, count=False)  # repair what an interrupted run left
        with RowWriter(self.options.out) as writer:
            jobs: list[Job] = [
                partial(self._answer_one, draft, model, writer)
                for draft in drafts
                for model in self.options.pool
                if (draft.id, model) not in self.state.answers
            ]
            await self._all("answering", jobs)

    def write_rows(self, drafts: list[Draft], *, count: bool) -> int:
        rows = []
        for draft in drafts:
            row, outcome = self.judge(draft)
            if count:
                self.report.count(draft.task.name, outcome)
            if row is not None:
                rows.append(dumps(row))
        write_atomic(self.options.out, rows)
        return len(rows)


async def generate(config: Config, tasks: list[TaskSpec], options: GenerateOptions) -> Report:
    """Run (or resume) the pipeline; the report also goes to ``DATA.report.json``."""
    fingerprints = {t.name: t.fingerprint() for t in tasks}
    models = list(dict.fromkeys([options.generator, *options.pool]))
    pool = ModelPool(config, models, options.concurrency, options.retry)  # checks names
    options.out.parent.mkdir(parents=True, exist_ok=True)
    with Journal(journal_path(options.out)) as journal:
        state = journal.load()
        meta = state.check(options.generator, fingerprints)
        if meta is not None:
            journal.append(meta)
            state.add(meta)
        run = Run(options, tasks, journal, state, pool)
        async with pool:
            await run.generate_queries()
            drafts = run.drafts(partial(build_encoder, config.embeddings))
            await run.answer_queries(drafts)
        run.write_rows(drafts, count=True)
    run.report.retries = pool.retries
    run.report.dollars_all_runs = state.spent()
    return run.report
