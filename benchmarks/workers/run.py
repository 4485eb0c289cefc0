"""Gateway requests/s at 32 connections: ``serve --workers 2`` against ``--workers 1``.

Starts, on free loopback ports, the fast fake upstream of the overhead benchmark
(``benchmarks/overhead/upstream.py``, its own process) and two gateways in front of it with
the same policy (``benchmarks/overhead/policy.yaml``): one with ``--workers 1``, one with
``--workers 2``. Then wrk (2 threads, 32 connections, ``post.lua``) drives them in
interleaved rounds, so machine noise hits both alike::

    warm-up: w1, w2; then for each round: w1, w2

and reports each round's req/s, the median over rounds, the w2/w1 ratio (of the medians
and the median of per-round ratios), and checks that the 2-worker gateway's
``router_requests_total`` counted every request wrk saw answered. Results go to
``results/workers.json``.

    .venv/bin/python -m benchmarks.workers.run [--rounds 8] [--duration 5]

Exit status: 0 done, 2 the run itself failed (a server did not start, wrk missing, any
non-2xx response or socket error, or metrics that lost requests).
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import shutil
import statistics
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.overhead import procs, wrkrun

HERE = Path(__file__).resolve().parent
OVERHEAD = HERE.parent / "overhead"

RESULTS = HERE / "results"
WORKERS = (1, 2)


def start(fleet: procs.Fleet) -> dict[int, procs.Server]:
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    up_port, *ports = procs.free_ports(1 + len(WORKERS))
    py = sys.executable
    upstream = fleet.add(
        procs.Server(
            "upstream",
            [py, str(OVERHEAD / "upstream.py"), "--port", str(up_port)],
            up_port,
            logs / "upstream.log",
        )
    )
    gateways = {}
    for workers, port in zip(WORKERS, ports, strict=True):
        cmd = [
            *(py, "-m", "router_proxy", "serve", "--config", str(OVERHEAD / "policy.yaml")),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        ]
        gateways[workers] = fleet.add(
            procs.Server(
                f"workers-{workers}",
                cmd,
                port,
                logs / f"workers-{workers}.log",
                env={"UPSTREAM_URL": f"http://127.0.0.1:{up_port}/v1"},
            )
        )
    procs.wait_ready(upstream, health=True)
    for server in gateways.values():
        procs.wait_ready(server, health=True)
    return gateways


def counted_requests(server: procs.Server) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(float(v) for v in re.findall(r"^router_requests_total\{.*\} (\S+)$", text, re.M))


def bench(args: argparse.Namespace, wrk: str, report: dict[str, Any]) -> int:
    fleet = procs.Fleet()
    try:
        gateways = start(fleet)
        answered = {w: 1.0 for w in WORKERS}  # wait_ready's probe request
        print(f"warm-up: {args.warmup} s each", flush=True)
        for workers, server in gateways.items():
            if args.warmup:
                warm = wrkrun.run_wrk(
                    wrk,
                    server,
                    target=f"w{workers}",
                    connections=args.connections,
                    duration=args.warmup,
                    round_no=0,
                )
                answered[workers] += warm.requests
        runs: list[wrkrun.WrkResult] = []
        for round_no in range(1, args.rounds + 1):
            line = [f"round {round_no}/{args.rounds}:"]
            for workers, server in gateways.items():
                result = wrkrun.run_wrk(
                    wrk,
                    server,
                    target=f"w{workers}",
                    connections=args.connections,
                    duration=args.duration,
                    round_no=round_no,
                )
                runs.append(result)
                answered[workers] += result.requests
                line.append(f"--workers {workers} {result.rps:,.0f} req/s")
            print("  ".join(line), flush=True)
        counted = counted_requests(gateways[2])
    finally:
        fleet.stop_all()
    report["runs"] = [asdict(r) for r in runs]
    rps = {w: [r.rps for r in runs if r.target == f"w{w}"] for w in WORKERS}
    median = {w: statistics.median(values) for w, values in rps.items()}
    per_round = [two / one for one, two in zip(rps[1], rps[2], strict=True)]
    report["summary"] = {
        "median_rps": {f"workers_{w}": m for w, m in median.items()},
        "ratio_of_medians": median[2] / median[1],
        "median_of_per_round_ratios": statistics.median(per_round),
        "per_round_ratios": per_round,
        "workers_2_metrics": {"router_requests_total": counted, "answered_by_wrk": answered[2]},
    }
    print()
    print(f"req/s @{args.connections} conns, median of {args.rounds} rounds x {args.duration} s")
    print(f"  --workers 1: {median[1]:,.0f}")
    print(f"  --workers 2: {median[2]:,.0f}")
    rounds = ", ".join(f"{r:.2f}" for r in per_round)
    print(f"  ratio 2/1:   {median[2] / median[1]:.2f}x")
    print(f"  median of per-round ratios {statistics.median(per_round):.2f}x ({rounds})")
    print(f"--workers 2 /metrics router_requests_total: {counted:.0f} (wrk saw {answered[2]:.0f})")
    # wrk counts only answers that arrived before it stopped: each wrk run may leave up to
    # one request per connection unanswered that the gateway still finishes and counts.
    wrk_runs = args.rounds + (1 if args.warmup else 0)
    if not answered[2] <= counted <= answered[2] + args.connections * wrk_runs:
        print("FAILED: the 2-worker gateway's metrics do not match the requests served")
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds each (0 skips)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--output", type=Path, default=RESULTS / "workers.json")
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    command = " ".join(["python", "-m", "benchmarks.workers.run", *(argv or sys.argv[1:])])
    report: dict[str, Any] = {
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": wrkrun.wrk_version(wrk),
        },
        "settings": vars(args) | {"output": str(args.output), "wrk_threads": 2},
    }
    return procs.run_reported(report, args.output, lambda: bench(args, wrk, report))


if __name__ == "__main__":
    sys.exit(main())
