"""``router-proxy train`` and ``router-proxy eval``; ``register`` adds them to the CLI.

    router-proxy train --algorithm knn --data train.jsonl --out artifacts/knn \\
        [--option k=50 --option weights=uniform] [--backend static]
    router-proxy train --algorithm cascal --records records/ --out artifacts/live \\
        [--wide-out live.jsonl]      # recorded traffic (served + shadow answers), no labels
    router-proxy train --algorithm cascal --out artifacts/live \\
        --records 'postgresql://reader@db/analytics?table=router_records' --since 2026-12-01
    router-proxy eval --router artifacts/knn [--router artifacts/mf] --data test.jsonl \\
        [--json] [--plot curve.png] [--judge consensus [--labels true.jsonl]]

Progress bars go to stderr; stdout carries only the result (one JSON object with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from router_proxy.embeddings.config import Backend, EmbeddingsConfig
from router_proxy.records.source import RecordSourceError, Window, is_database, time_argument
from router_proxy.selection.artifact import ArtifactError
from router_proxy.training.dataset import DatasetError
from router_proxy.training.extra import require_tqdm
from router_proxy.training.registry import QUERY_ONLY, TRAINERS

if TYPE_CHECKING:
    from router_proxy.training.evaluate import Evaluation

BACKENDS = get_args(Backend)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = subparsers.add_parser("train", help="train a learned selector from routing data")
    train.add_argument("--algorithm", required=True, choices=sorted(TRAINERS))
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        action="append",
        metavar="JSONL",
        help="wide-format routing data (repeat for several files)",
    )
    source.add_argument(
        "--records",
        action="append",
        metavar="DIR|FILE|URL",
        help="decision records (served + shadow answers, JSONL; a directory: every "
        "*.jsonl under it; or the postgres sink's table: "
        "postgresql://USER@HOST/DB?table=TABLE), joined by request id into wide rows; "
        "knn and mf learn from consensus labels (repeatable)",
    )
    train.add_argument(
        "--since",
        type=time_argument,
        metavar="TIME",
        help="with --records: only requests that started at or after TIME (ISO 8601, UTC "
        "unless it says; or unix seconds)",
    )
    train.add_argument(
        "--until",
        type=time_argument,
        metavar="TIME",
        help="with --records: only requests started before TIME",
    )
    train.add_argument(
        "--wide-out", metavar="JSONL", help="with --records: also write the wide rows here"
    )
    train.add_argument("--out", required=True, metavar="DIR", help="artifact directory")
    train.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="trainer option; the value is read as JSON when it parses",
    )
    train.add_argument("--backend", choices=BACKENDS, default="static", help="encoder")
    train.add_argument("--embeddings-model", metavar="DIR", help="a local encoder folder")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=_train)

    ev = subparsers.add_parser("eval", help="quality-cost curves of trained selectors")
    ev.add_argument(
        "--router",
        action="append",
        required=True,
        metavar="DIR",
        help="artifact directory (repeat to compare); its name labels it",
    )
    ev.add_argument("--data", required=True, metavar="JSONL", help="held-out routing data")
    ev.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ev.add_argument("--plot", metavar="PNG", help="write the quality-cost figure here")
    ev.add_argument("--points", type=int, default=48, help="cost weights swept (default 48)")
    ev.add_argument(
        "--embeddings-model",
        metavar="DIR",
        help="the encoder folder, for artifacts trained with a local model",
    )
    ev.add_argument(
        "--judge",
        choices=("labels", "consensus"),
        default="labels",
        help="what scores the held-out rows: their `scores`, or consensus among their "
        "`responses` (recorded traffic has no labels)",
    )
    ev.add_argument(
        "--labels",
        action="append",
        default=[],
        metavar="JSONL",
        help="with --judge consensus: wide rows with true `scores` (joined by prompt) to "
        "report the judge's agreement with",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(handler=_eval)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values as JSON when they parse (50, 0.1, true), else text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option wants KEY=VALUE, not {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def _train(args: argparse.Namespace) -> int:
    require_tqdm("router-proxy train")  # before any work; the CLI prints the install line
    if args.data and (args.since is not None or args.until is not None):
        print("train: --since and --until pick recorded requests: use --records", file=sys.stderr)
        return 2
    from router_proxy.embeddings.registry import build_encoder
    from router_proxy.training.data import TrainingData

    scratch = tempfile.TemporaryDirectory(prefix="router-proxy-train-")
    try:
        options = parse_options(args.option)
        encoder = build_encoder(EmbeddingsConfig(backend=args.backend, model=args.embeddings_model))
        started = time.perf_counter()
        # Query-only trainers (CASCAL) learn from the models' responses and never read
        # `scores`; the others learn from `scores`.
        field = "responses" if args.algorithm in QUERY_ONLY else "scores"
        paths = args.data or _records_as_rows(args, scratch)
        data = TrainingData.load(paths, encoder, field=field, progress=not args.quiet)
        if not data.models:
            raise ValueError(f"no model has `{field}` in every row: {args.algorithm} needs them")
        embedded = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # means over data without costs
            artifact = TRAINERS[args.algorithm](data, options)
        trained = time.perf_counter()
        path = artifact.save(args.out)
    except RecordSourceError as exc:  # a database that cannot be read: a usage error
        print(f"train: {exc}", file=sys.stderr)
        return 2
    except (ArtifactError, DatasetError, ValueError, OSError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 1
    finally:
        scratch.cleanup()
    chosen = {k: v for k, v in artifact.extra.items() if isinstance(v, str | int | float)}
    print(
        f"{args.algorithm}: {len(data.rows)} prompts, {len(data.models)} models, "
        f"encoder {data.encoder}"
    )
    print(f"settings: {json.dumps(chosen)}")
    print(f"time: embedding {embedded - started:.2f} s, training {trained - embedded:.2f} s")
    print(f"wrote {path}")
    return 0


def _records_as_rows(
    args: argparse.Namespace, scratch: tempfile.TemporaryDirectory[str]
) -> list[str]:
    """``--records`` joined into wide rows (written to ``--wide-out`` without scores);
    the file the trainer reads: the same rows, with consensus labels for knn and mf."""
    from router_proxy.records.postgres_reader import open_databases
    from router_proxy.training.records import (
        consensus_labels,
        join_records,
        read_records,
        write_rows,
    )

    window = Window(args.since, args.until)
    paths = [spec for spec in args.records if not is_database(spec)]
    with ExitStack() as stack:
        databases = open_databases(args.records, stack, window, served_only=False)
        records = chain(read_records(paths), *databases)
        rows, report = join_records(records, window=window)
    for line in report.lines():
        print(line, file=sys.stderr)
    if len(report.models) < 2 or not rows:
        raise ValueError(
            "the records hold no requests answered by two or more models: enable shadow "
            "sampling (with the decision's prompt and answer recorded) and record longer"
        )
    if args.wide_out:
        write_rows(rows, args.wide_out)
        print(f"wrote {len(rows)} wide rows to {args.wide_out}", file=sys.stderr)
    if args.algorithm not in QUERY_ONLY:
        rows = consensus_labels(rows, report.models)
    return [str(write_rows(rows, Path(scratch.name) / "records.jsonl"))]


def _eval(args: argparse.Namespace) -> int:
    require_tqdm("router-proxy eval")
    from router_proxy.training.evaluate import evaluate

    try:
        result = evaluate(
            args.router,
            args.data,
            points=args.points,
            embeddings_model=args.embeddings_model,
            progress=not args.quiet,
            judge=args.judge,
            labels=args.labels,
        )
        if args.plot:
            from router_proxy.training.plot import plot

            plot(result, args.plot)
    except (ArtifactError, DatasetError, ValueError, OSError, RuntimeError) as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_json()) if args.json else format_table(result))
    return 0


def format_table(result: Evaluation) -> str:
    low, high = result.axis
    lines = [f"{result.rows} held-out rows; AIQ on the shared cost axis ${low:.3f}-${high:.3f}"]
    if result.judge == "consensus":
        agreement = result.judge_agreement
        lines.append(
            "judge: consensus among the rows' answers; agreement with true labels "
            + (
                f"{agreement:.4f} over {result.judge_labelled} (row, model) pairs"
                if agreement is not None
                else "unknown (no labels)"
            )
        )
    for router in result.routers:
        lines += [
            "",
            f"router {router.name} ({router.algorithm})  AIQ {router.aiq:.4f}",
            f"  {router.knob:>13}  {'quality':>8}  {'$/1k':>8}"
            + ("  calls/request" if router.calls is not None else ""),
        ]
        calls: list[float | None] = [None] * len(router.points)
        if router.calls is not None:
            calls = list(router.calls)
        lines += [
            f"  {p.cost_weight:13.5g}  {p.quality:8.4f}  {p.cost_per_1k:8.3f}"
            + (f"  {n:13.2f}" if n is not None else "")
            for p, n in zip(router.points, calls, strict=True)
        ]
    base = result.baselines
    lines += ["", "baselines", f"  {'model':<44}  {'quality':>8}  {'$/1k':>8}"]
    for model, (cost, quality) in sorted(base.single.items(), key=lambda kv: kv[1][0]):
        mark = "  <- best single" if model == base.best_single else ""
        lines.append(f"  {model:<44}  {quality:8.4f}  {cost:8.3f}{mark}")
    for label, (cost, quality) in (("random (expected)", base.random), ("oracle", base.oracle)):
        lines.append(f"  {label:<44}  {quality:8.4f}  {cost:8.3f}")
    lines += ["", "AIQ", f"  {'zero router (single-model hull)':<44}  {result.zero_router_aiq:.4f}"]
    lines += [f"  {r.name:<44}  {r.aiq:.4f}" for r in result.routers]
    return "\n".join(lines)
