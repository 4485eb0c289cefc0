"""``router-proxy generate``: routing data from generated queries, no labels needed.

    router-proxy generate --config POLICY.yaml --tasks TASKS.yaml --generator MODEL \\
        --pool M1,M2,M3 --per-task 200 --out data/generated.jsonl [--concurrency 8]
    router-proxy train --algorithm cascal --data data/generated.jsonl --out artifacts/cascal

``--per-task N`` is how many queries the generator writes per task; the ones dropped as
malformed, near-duplicate or by the filters are not replaced (raise N and re-run: the
new queries are added). Re-running the same command resumes: calls already in
``DATA.jsonl.journal`` are not made again. The counts of what each step dropped go to
stdout and ``DATA.report.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from router_proxy.config.errors import ConfigError
from router_proxy.training.extra import require_tqdm
from router_proxy.training.generate.filters import FilterSettings
from router_proxy.training.generate.store import JournalError, journal_path, report_path

if TYPE_CHECKING:
    from router_proxy.training.generate.pipeline import GenerateOptions


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "generate",
        help="routing data from generated queries answered by a pool of models",
        description=__doc__.split("\n\n")[0],
    )
    cmd.add_argument("--config", required=True, help="policy YAML: its models and providers")
    cmd.add_argument("--tasks", required=True, help="TASKS.yaml: the users' kinds of request")
    cmd.add_argument("--generator", required=True, metavar="MODEL", help="writes the queries")
    cmd.add_argument("--pool", required=True, metavar="M1,M2,...", help="models that answer")
    cmd.add_argument(
        "--per-task",
        required=True,
        type=int,
        metavar="N",
        help="queries written per task (drops are not replaced)",
    )
    cmd.add_argument("--out", required=True, metavar="JSONL", help="the routing data")
    cmd.add_argument("--concurrency", type=int, default=8, help="calls at once (default 8)")
    cmd.add_argument(
        "--dedup-threshold",
        type=float,
        default=0.95,
        help="drop a query whose cosine similarity to an earlier one reaches this (0.95)",
    )
    cmd.add_argument("--temperature", type=float, default=0.8, help="generator's (0.8)")
    cmd.add_argument("--answer-temperature", type=float, default=0.0, help="pool's (0)")
    cmd.add_argument("--max-tokens", type=int, default=1024, help="per reply (1024)")
    cmd.add_argument("--attempts", type=int, default=5, help="tries per call (5)")
    cmd.add_argument("--backoff", type=float, default=1.0, help="first retry's wait, s (1)")
    cmd.add_argument(
        "--majority-share", type=float, default=0.5, help="share of the pool a majority needs"
    )
    cmd.add_argument(
        "--no-agreement-filter",
        action="store_true",
        help="keep queries whose generator answer differs from the pool's consensus",
    )
    cmd.add_argument(
        "--no-differentiation-filter",
        action="store_true",
        help="keep unanimous queries and ones without a majority",
    )
    cmd.add_argument("--quiet", action="store_true", help="no progress bars")
    cmd.set_defaults(handler=run_command)


def _options(args: argparse.Namespace) -> GenerateOptions:
    # Imported here: `router-proxy serve` should not pay for the providers' imports twice.
    from router_proxy.training.generate.calls import RetryPolicy
    from router_proxy.training.generate.pipeline import GenerateOptions

    pool = tuple(dict.fromkeys(m.strip() for m in args.pool.split(",") if m.strip()))
    if len(pool) < 2:
        raise ValueError("--pool needs at least two models (three or more for a majority)")
    if args.per_task < 1 or args.concurrency < 1 or args.attempts < 1:
        raise ValueError("--per-task, --concurrency and --attempts must be at least 1")
    if not 0 < args.dedup_threshold <= 1 or not 0 < args.majority_share <= 1:
        raise ValueError("--dedup-threshold and --majority-share must be in (0, 1]")
    return GenerateOptions(
        generator=args.generator,
        pool=pool,
        per_task=args.per_task,
        out=Path(args.out),
        concurrency=args.concurrency,
        dedup_threshold=args.dedup_threshold,
        temperature=args.temperature,
        answer_temperature=args.answer_temperature,
        max_tokens=args.max_tokens,
        retry=RetryPolicy(attempts=args.attempts, backoff=args.backoff),
        filters=FilterSettings(
            agreement=not args.no_agreement_filter,
            differentiation=not args.no_differentiation_filter,
            majority_share=args.majority_share,
        ),
        progress=not args.quiet,
    )


def run_command(args: argparse.Namespace) -> int:
    require_tqdm("router-proxy generate")  # before any work; the CLI prints the install line
    from router_proxy.config.load import load_config
    from router_proxy.training.generate.pipeline import generate
    from router_proxy.training.generate.tasks import load_tasks

    try:
        options = _options(args)
        config, _ = load_config(args.config)
        tasks = load_tasks(args.tasks)
        report = asyncio.run(generate(config, tasks, options))
    except (ConfigError, JournalError, ValueError, OSError) as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"generate: interrupted; finished calls are kept in {journal_path(options.out)}: "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    context = {
        "generator": options.generator,
        "pool": list(options.pool),
        "out": str(options.out),
        "dedup_threshold": options.dedup_threshold,
        "filters": options.filters.describe(),
    }
    path = report_path(options.out)
    path.write_text(json.dumps(report.to_json(**context), indent=2) + "\n", encoding="utf-8")
    print(report.summary())
    print(f"wrote {options.out} and {path}")
    if report.failed:
        print(f"generate: {report.failed} call(s) failed; run again to retry them", file=sys.stderr)
        return 2
    return 0
