"""Gateway overhead benchmark: the gateway against the floor, the thinnest passthrough.

Starts, on free loopback ports, a fake upstream (``upstream.py``) and in front of it the
targets (``targets.py``): ``floor`` (``floor.py``), ``gateway`` (``router_proxy serve
--config POLICY``) and, with ``--litellm PYTHON``, the LiteLLM proxy. Then, interleaved
round by round so machine noise hits every target alike:

* default: ``wrk`` on one surface's path (``--surface chat|responses|messages``),
  ``for each round: each target @1 conn, then each target @N conns``;
* ``--stream``: an aiohttp client reading SSE streams (``stream.py``): time to the first
  event and each later event's arrival, one connection; then streams/s at N connections.

Reports medians, every target's ratio to the floor, and PASS/FAIL against the issue's
targets. Results go to ``results/`` (git-ignored).

Exit status: 0 targets met, 1 a target missed, 2 the run itself failed (a server did not
start or has no such route, wrk missing, any non-2xx answer or socket error), 130 stopped.

    .venv/bin/python -m benchmarks.overhead.run [--surface responses] [--stream] [--policy P]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import shutil
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.overhead import report as rep
from benchmarks.overhead import stream, targets
from benchmarks.overhead.procs import Fleet, Server, run_reported, wait_ready
from benchmarks.overhead.surfaces import CHAT, SURFACES, Surface
from benchmarks.overhead.wrkrun import WrkResult, run_wrk, wrk_version

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
POLICY = HERE / "policy.yaml"
# The project's own floor, beside the repository (chat only); floor.py is our copy of it.
SHARED_FLOOR = HERE.parents[2] / "shared" / "bench" / "floor_passthrough.py"
LUA_SCRIPT = CHAT.script  # the chat request; benchmarks/workers and routing reuse it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Gateway vs. floor overhead (interleaved rounds).")
    p.add_argument("--duration", type=int, default=1, help="seconds per measured run")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up seconds per target (0: none)")
    p.add_argument("--connections", type=int, default=32, help="N for the throughput runs")
    p.add_argument("--policy", type=Path, default=POLICY, help="the gateway's config")
    p.add_argument("--surface", choices=sorted(SURFACES), default="chat", help="API to drive")
    p.add_argument("--litellm", metavar="PYTHON", help="a python with litellm[proxy] installed")
    p.add_argument(
        "--prompts",
        choices=("auto", "same", "vary"),
        default="auto",
        help="vary the prompt per request (defeats embedding caches); auto: vary when the "
        "policy has embedding or domain signals",
    )
    p.add_argument("--stream", action="store_true", help="measure SSE streams (chat surface)")
    p.add_argument("--chunks", type=int, default=20, help="--stream: content chunks a stream")
    p.add_argument("--chunk-gap-ms", type=float, default=1.0, help="--stream: gap between them")
    p.add_argument("--requests", type=int, default=20, help="--stream: streams per round @1")
    p.add_argument("--output", type=Path, help="JSON results (default results/overhead*.json)")
    p.add_argument(
        "--floor",
        choices=("auto", "shared", "own"),
        default="auto",
        help="the baseline: the project's shared floor (../shared/bench/floor_passthrough.py; "
        "chat only), our own copy (floor.py, every surface), or auto: shared when it is "
        "there and the surface is chat",
    )
    # Debug aid: a second floor stands in for the gateway, to measure the harness (A/A).
    p.add_argument("--fake-gateway", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    checks = [
        (1 <= args.rounds <= 50, "--rounds must be 1..50"),
        (1 <= args.duration <= 300, "--duration must be 1..300 seconds"),
        (0 <= args.warmup <= 60, "--warmup must be 0..60 seconds"),
        (2 <= args.connections <= 1024, "--connections must be 2..1024"),
        (2 <= args.chunks <= 10_000, "--chunks must be 2..10000"),
        (0 <= args.chunk_gap_ms <= 1000, "--chunk-gap-ms must be 0..1000"),
        (1 <= args.requests <= 10_000, "--requests must be 1..10000"),
        (args.policy.is_file(), f"--policy {args.policy}: no such file"),
        (not (args.stream and args.surface != "chat"), "--stream measures the chat surface only"),
    ]
    shared = SHARED_FLOOR.is_file()
    checks += [
        (args.floor != "shared" or shared, f"--floor shared: no {SHARED_FLOOR}"),
        (args.floor != "shared" or args.surface == "chat", "--floor shared serves chat only"),
    ]
    for ok, message in checks:
        if not ok:
            p.error(message)
    use_shared = args.floor == "shared" or (args.floor == "auto" and shared)
    args.shared_floor = SHARED_FLOOR if use_shared and args.surface == "chat" else None
    if args.litellm is not None:
        found = shutil.which(args.litellm)
        if found is None:
            p.error(f"--litellm {args.litellm}: not an executable")
        # Absolute (the servers run from the repository root), not resolved: a venv's
        # python is a symlink, and resolving it would leave the venv.
        args.litellm = os.path.abspath(found)
    if args.output is None:
        suffix = "_stream" if args.stream else "" if args.surface == "chat" else f"_{args.surface}"
        args.output = RESULTS_DIR / f"overhead{suffix}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None and not args.stream:
        print(
            "error: `wrk` is not installed or not on PATH.\n"
            "  Debian/Ubuntu: apt-get install -y wrk    macOS: brew install wrk\n"
            "  (see benchmarks/overhead/README.md)",
            file=sys.stderr,
        )
        return 2
    vary = args.prompts == "vary" or (args.prompts == "auto" and rep.uses_encoder(args.policy))
    goal = rep.targets_for(args.policy)
    report: dict[str, Any] = {
        "schema": 2,
        "mode": "stream" if args.stream else "wrk",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": wrk_version(wrk) if wrk else None,
        },
        "settings": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "output"
        }
        | {"vary_prompts": vary},
        "targets": goal.as_json()
        | {"ttfb_ratio_max": rep.TTFB_MAX, "chunk_added_us_max": rep.CHUNK_ADDED_US_MAX},
    }
    print(f"policy {args.policy}; prompts {'vary per request' if vary else 'all the same'}")
    fleet = Fleet()

    def measure() -> int:
        upstream, servers = start(args, fleet, report)
        if args.stream:
            return asyncio.run(bench_stream(args, upstream, servers, report, vary))
        assert wrk is not None
        return bench_wrk(args, wrk, upstream, servers, report, vary, goal)

    return run_reported(report, args.output, measure, fleet)


def start(
    args: argparse.Namespace, fleet: Fleet, report: dict[str, Any]
) -> tuple[Server, dict[str, Server]]:
    options = targets.Options(
        policy=args.policy.resolve(),
        litellm_python=args.litellm,
        chunks=args.chunks,
        chunk_gap_ms=args.chunk_gap_ms,
        fake_gateway=args.fake_gateway,
        shared_floor=args.shared_floor,
    )
    upstream, servers = targets.start(options, fleet)
    report["commands"] = {s.name: s.cmd for s in fleet.servers}
    surface = SURFACES[args.surface]
    wait_ready(upstream, health=False, surface=surface)
    for name, server in servers.items():
        wait_ready(server, health=name != "floor", surface=surface)
    print(f"every target answers {surface.path}")
    return upstream, servers


def bench_wrk(
    args: argparse.Namespace,
    wrk: str,
    upstream: Server,
    servers: dict[str, Server],
    report: dict[str, Any],
    vary: bool,
    goal: rep.Targets,
) -> int:
    surface: Surface = SURFACES[args.surface]
    script = surface.varied_script(RESULTS_DIR / "logs") if vary else surface.script
    high = args.connections
    runs: list[WrkResult] = []
    report["runs"] = []  # filled as it goes: a failed run still reports what it measured

    def measure(name: str, server: Server, conns: int, seconds: int, round_no: int) -> WrkResult:
        return run_wrk(
            wrk,
            server,
            target=name,
            connections=conns,
            duration=seconds,
            round_no=round_no,
            script=script,
            path=surface.path,
        )

    # The ceiling: the upstream on its own, so a slow upstream cannot hide in the ratios.
    report["upstream_alone"] = {}
    for conns in (1, high):
        r = measure("upstream", upstream, conns, min(args.duration, 3), 0)
        report["upstream_alone"][str(conns)] = asdict(r)
        print(f"upstream alone @{conns:>3} conn: p50 {r.p50_ms:.3f} ms, {r.rps:,.0f} req/s")
    if args.warmup > 0:
        for name, server in servers.items():
            for conns in (high, 1):
                measure(name, server, conns, args.warmup, 0)
        print(f"warmed up ({args.warmup}s per target and connection count)")

    for round_no in range(1, args.rounds + 1):
        for conns in (1, high):
            for name, server in servers.items():
                print(
                    f"[round {round_no}/{args.rounds}] {name:<8} @{conns:>3} conn ... ",
                    end="",
                    flush=True,
                )
                r = measure(name, server, conns, args.duration, round_no)
                runs.append(r)
                report["runs"].append(asdict(r))
                cpu = f"  {r.cpu_us_per_request:,.0f} us CPU/req" if r.cpu_us_per_request else ""
                print(f"p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms  {r.rps:,.0f} req/s{cpu}")
    return rep.report_wrk(report, runs, list(servers), high, goal)


async def bench_stream(
    args: argparse.Namespace,
    upstream: Server,
    servers: dict[str, Server],
    report: dict[str, Any],
    vary: bool,
) -> int:
    body = stream.stream_bodies(vary)
    ids = itertools.count(1)
    high = args.connections
    batches: list[stream.Batch] = []
    report["batches"] = []
    alone = await stream.sequential(upstream, "upstream", 0, args.requests, body, ids)
    ceiling = stream.summarize([alone], "upstream")
    report["upstream_alone"] = ceiling
    print(f"upstream alone: TTFB {ceiling['ttfb_ms']:.3f} ms, total {ceiling['total_ms']:.2f} ms")
    if args.warmup > 0:
        for name, server in servers.items():
            await stream.concurrent(server, name, 0, high, args.warmup, body, ids)
        print(f"warmed up ({args.warmup}s per target)")
    for round_no in range(1, args.rounds + 1):
        for name, server in servers.items():
            b = await stream.sequential(server, name, round_no, args.requests, body, ids)
            batches.append(b)
            ttfb = sorted(s.ttfb_ms for s in b.streams)[len(b.streams) // 2]
            print(f"[round {round_no}/{args.rounds}] {name:<8} @  1 conn: TTFB p50 {ttfb:.3f} ms")
        for name, server in servers.items():
            b = await stream.concurrent(server, name, round_no, high, args.duration, body, ids)
            batches.append(b)
            print(
                f"[round {round_no}/{args.rounds}] {name:<8} @{high:>3} conn: "
                f"{b.completed / b.seconds:,.0f} streams/s"
            )
        report["batches"] = [b.as_json() for b in batches]
    names = list(servers)
    flat = {n: stream.summarize(batches, n) for n in names}
    added = {n: stream.added_latency(batches, n) for n in names if n != "floor"}
    report["added_latency_us"] = {n: a.as_json() for n, a in added.items()}
    return rep.report_stream(report, flat, added, names, high)


if __name__ == "__main__":
    sys.exit(main())
