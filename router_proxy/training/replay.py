"""``router-proxy replay``: re-route recorded requests under another policy and report
what would change, without calling any model.

    router-proxy replay --records records/ --config new-policy.yaml [--json]
    router-proxy replay --records 'postgresql://reader@db/analytics?table=router_records' \
        --config new-policy.yaml [--since 2026-12-01] [--until 2026-12-07T12:00] [--limit N]

Each served record with content (``records.content: true``: its messages, else its
prompt) is routed again by the new policy's pipeline (signals, decisions, selection;
``pipeline.route`` only). The report counts the decisions and models that change, with a
transition table and examples, and estimates the cost change: the new choice priced at the
new policy's prices with the usage the record measured. Records without content cannot be
replayed (signals need the text): they are counted apart, and the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from router_proxy.config.references import AUTO
from router_proxy.context import RequestContext
from router_proxy.errors import GatewayError
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.records.postgres_reader import open_databases
from router_proxy.records.source import (
    EVERYTHING,
    RecordSourceError,
    Window,
    is_database,
    time_argument,
)

if TYPE_CHECKING:
    from router_proxy.config.schema import Config
    from router_proxy.pipeline import Pipeline

EXAMPLES = 5
NO_CONTENT_HINT = (
    "{n} of {total} served records have no prompt: they were recorded without content and "
    "cannot be replayed (routing reads the text); set `records.content: true` (or per "
    "decision under records.decisions) to record it"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = subparsers.add_parser(
        "replay", help="re-route recorded requests under a policy; report what changes"
    )
    replay.add_argument(
        "--records",
        nargs="+",
        required=True,
        metavar="PATH|URL",
        help="JSONL records files or folders (every *.jsonl in them, rotated files too), "
        "or the postgres sink's table: postgresql://USER@HOST/DB?table=TABLE",
    )
    replay.add_argument("--config", required=True, help="the policy to replay them under")
    replay.add_argument(
        "--since",
        type=time_argument,
        metavar="TIME",
        help="only requests that started at or after TIME (ISO 8601, UTC unless it says; "
        "or unix seconds)",
    )
    replay.add_argument(
        "--until", type=time_argument, metavar="TIME", help="only requests started before TIME"
    )
    replay.add_argument(
        "--limit", type=int, metavar="N", help="replay the first N served records read"
    )
    replay.add_argument("--json", action="store_true", help="one JSON object on stdout")
    replay.add_argument(
        "--examples", type=int, default=EXAMPLES, help=f"changed rows shown (default {EXAMPLES})"
    )
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(handler=_replay)


@dataclass
class Report:
    files: list[str]
    served: int = 0  # served records read (shadow records are skipped)
    replayed: int = 0
    no_content: int = 0  # recorded without a prompt: cannot be replayed
    unroutable: Counter[str] = field(default_factory=Counter)  # why the new policy refused
    decisions_changed: int = 0
    models_changed: int = 0
    decision_moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    model_moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    priced: int = 0  # replayed rows with recorded usage and cost
    multi_call: int = 0  # priced rows the new policy sends to a cascade or aggregate
    recorded_cost: float = 0.0
    estimated_cost: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        change = self.estimated_cost - self.recorded_cost
        return {
            "files": self.files,
            "served_records": self.served,
            "replayed": self.replayed,
            "not_replayable": {"no_content": self.no_content, **dict(self.unroutable)},
            "decisions_changed": self.decisions_changed,
            "models_changed": self.models_changed,
            "decision_transitions": _moves(self.decision_moves),
            "model_transitions": _moves(self.model_moves),
            "examples": self.examples,
            "cost": {
                "rows_priced": self.priced,
                "recorded_usd": self.recorded_cost,
                "estimated_usd": self.estimated_cost,
                "change_usd": change,
                "change_pct": 100 * change / self.recorded_cost if self.recorded_cost else None,
                "rows_multi_call": self.multi_call,
            },
            "notes": self.notes,
        }


def _moves(moves: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"from": a, "to": b, "count": n} for (a, b), n in moves.most_common()]


def record_files(paths: Iterable[str]) -> list[Path]:
    """Files named, and every ``*.jsonl`` in folders named (sorted: rotated files by age)."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        files += sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    return files


def read_records(files: Sequence[Path], window: Window = EVERYTHING) -> Iterator[dict[str, Any]]:
    """The served records in ``files`` (in ``window``), in order; a line that is not a
    JSON object is an error naming its file and line."""
    for path in files:
        with path.open("rb") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{path}:{number}: not a JSON object")
                if record.get("kind", "served") == "served" and window.holds(record.get("time")):
                    yield record


def context_of(record: dict[str, Any]) -> RequestContext | None:
    """The request as routing saw it, from the record's messages (else its prompt); None
    when the record kept no content."""
    requested = record.get("requested_model") or AUTO
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        body = {"model": requested, "messages": messages}
        return RequestContext(ChatCompletionRequest.model_validate(body), body, _id(record))
    prompt = record.get("prompt")
    if isinstance(prompt, str):
        ctx = RequestContext.from_prompt(prompt, request_id=_id(record))
        ctx.request.model = ctx.raw_body["model"] = requested
        return ctx
    return None


def _id(record: dict[str, Any]) -> str:
    return str(record.get("request_id") or "replay")


async def replay(
    records: Iterable[dict[str, Any]],
    pipeline: Pipeline,
    report: Report,
    examples: int = EXAMPLES,
) -> Report:
    config = pipeline.config
    for record in records:
        report.served += 1
        ctx = context_of(record)
        if ctx is None:
            report.no_content += 1
            continue
        try:
            plan = await pipeline.route(ctx)
        except GatewayError as exc:
            report.unroutable[exc.code or type(exc).__name__] += 1
            continue
        report.replayed += 1
        old_decision = record.get("decision") or "-"
        candidates = record.get("candidates") or []
        old_model = candidates[0] if candidates else record.get("model") or "-"
        decision_moved = old_decision != plan.decision
        model_moved = old_model != plan.model
        report.decisions_changed += decision_moved
        report.models_changed += model_moved
        report.decision_moves[(old_decision, plan.decision)] += 1
        report.model_moves[(old_model, plan.model)] += 1
        if (decision_moved or model_moved) and len(report.examples) < examples:
            report.examples.append(
                _example(record, ctx, old_decision, old_model, plan.decision, plan.model)
            )
        new = plan.calls.always_called if plan.calls is not None else (plan.model,)
        report.multi_call += _price(record, new, config, report) and plan.calls is not None
    return report


def _example(
    record: dict[str, Any],
    ctx: RequestContext,
    old_decision: str,
    old_model: str,
    decision: str,
    model: str,
) -> dict[str, Any]:
    prompt = ctx.text("last_user")
    return {
        "request_id": record.get("request_id"),
        "prompt": prompt if len(prompt) <= 80 else prompt[:77] + "...",
        "decision": [old_decision, decision],
        "model": [old_model, model],
    }


def _price(record: dict[str, Any], models: tuple[str, ...], config: Config, report: Report) -> bool:
    """The recorded cost beside the new choice's (each of ``models`` called once), at the
    new prices, for the tokens of the recorded answer; False when nothing was paid."""
    usage, cost = _answer_usage(record), record.get("cost_usd")
    if usage is None or not isinstance(cost, int | float):
        return False  # a cache hit, an error: nothing was paid, nothing to compare
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    report.priced += 1
    report.recorded_cost += float(cost)
    report.estimated_cost += sum(
        config.models[m].cost.dollars(prompt_tokens, completion_tokens) for m in models
    )
    return True


def _answer_usage(record: dict[str, Any]) -> dict[str, Any] | None:
    """The tokens of one call answering the request: the record's usage, or for a
    recorded cascade or aggregate (whose usage sums every call) its returned call's."""
    calls = record.get("calls")
    if isinstance(calls, list):
        for call in calls:
            if (
                isinstance(call, dict)
                and call.get("model") == record.get("model")
                and call.get("role") == "answer"
                and isinstance(call.get("usage"), dict)
            ):
                answered: dict[str, Any] = call["usage"]
                return answered
    usage = record.get("usage")
    return usage if isinstance(usage, dict) else None


def _notes(report: Report, config: Config) -> list[str]:
    notes = []
    if report.no_content:
        notes.append(NO_CONTENT_HINT.format(n=report.no_content, total=report.served))
    if any(signal.type == "header" for signal in config.signals):
        notes.append(
            "header signals see no headers in a replay (records do not keep request "
            "headers): decisions that need one do not match"
        )
    if report.priced:
        notes.append(
            "the estimated cost prices each new choice with the tokens the recorded model "
            "used; another model's tokenizer and answer length differ"
        )
    if report.multi_call:
        notes.append(
            f"{report.multi_call} priced rows go to a cascade or aggregate under the new "
            "policy: priced at the calls every request makes (a cascade's first stage, an "
            "aggregate's panel and refiner), a lower bound: escalations depend on answers "
            "a replay does not have"
        )
    return notes


def _replay(args: argparse.Namespace) -> int:
    from router_proxy.config.load import check_config
    from router_proxy.pipeline import Pipeline

    config, _ = check_config(args.config)
    paths = [spec for spec in args.records if not is_database(spec)]
    files = record_files(paths)
    missing = [str(f) for f in files if not f.is_file()]
    if missing or (paths and not files):
        print(f"replay: no records file at {', '.join(missing or paths)}", file=sys.stderr)
        return 2
    window = Window(args.since, args.until)
    with ExitStack() as stack:
        try:
            databases = open_databases(args.records, stack, window, served_only=True)
        except RecordSourceError as exc:
            print(f"replay: {exc}", file=sys.stderr)
            return 2
        pipeline = Pipeline.build(config)
        report = Report([str(f) for f in files] + [db.source.name for db in databases])
        records: Iterable[dict[str, Any]] = chain(read_records(files, window), *databases)
        if args.limit is not None:
            records = islice(records, max(args.limit, 0))
        if not args.quiet:
            records = _progress(records)
        try:
            asyncio.run(replay(records, pipeline, report, args.examples))
        except ValueError as exc:
            print(f"replay: {exc}", file=sys.stderr)
            return 1
        except RecordSourceError as exc:  # the database went away while it was read
            print(f"replay: {exc}", file=sys.stderr)
            return 2
        finally:
            pipeline.cpu.close()
    report.notes = _notes(report, config)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render(report))
    return 0


def _progress(records: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    try:
        from tqdm import tqdm
    except ImportError:  # the train extra is not installed: no bar
        return records
    return tqdm(records, desc="replay", unit=" records", file=sys.stderr)


def render(report: Report) -> str:
    data = report.to_dict()
    cost = data["cost"]
    lines = [
        f"records:   {report.served} served, {report.replayed} replayed, "
        f"{report.no_content} without content"
        + "".join(f", {n} {why}" for why, n in report.unroutable.items()),
        f"decisions: {report.decisions_changed} of {report.replayed} changed",
        f"models:    {report.models_changed} of {report.replayed} changed",
    ]
    for title, moves in (("decision", report.decision_moves), ("model", report.model_moves)):
        lines.append(f"\n{title} transitions (recorded -> replayed):")
        width = max((len(a) for a, _ in moves), default=1)
        for (a, b), n in moves.most_common():
            mark = "" if a == b else "  *"
            lines.append(f"  {a:<{width}} -> {b}: {n}{mark}")
    if report.examples:
        lines.append("\nexamples:")
        for ex in report.examples:
            lines.append(
                f"  {ex['request_id']}: {ex['decision'][0]} -> {ex['decision'][1]}, "
                f"{ex['model'][0]} -> {ex['model'][1]}: {ex['prompt']!r}"
            )
    pct = f" ({cost['change_pct']:+.1f}%)" if cost["change_pct"] is not None else ""
    lines.append(
        f"\ncost ({cost['rows_priced']} rows with usage): recorded ${cost['recorded_usd']:.6f}, "
        f"estimated ${cost['estimated_usd']:.6f}, change ${cost['change_usd']:+.6f}{pct}"
    )
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
