"""Gateway memory: resident set size after a warm-up and after many requests.

Starts the fake upstream and the gateway (``python -m router_proxy serve --config POLICY``,
default ``configs/default.yaml``: mock models, no upstream call) on free loopback ports,
sends ``--warmup-requests`` chat completions, reads the RSS (VmRSS from /proc, summed over
the gateway's process tree), sends ``--requests`` more with a progress line and the RSS
every tenth, and reads it again. Prompts differ per request (``--prompts vary``), so a
cache or log that keeps something per prompt shows up as growth.

Checks the issue's limits on the last RSS: < 150 MB for a policy without encoder signals
(the default config), < 250 MB for one with embedding or domain signals. Also reports
whether torch is loaded in the server (``libtorch`` in /proc/PID/maps): the static encoder
must not need it.

Exit status: 0 within the limit, 1 over it, 2 the run failed, 130 stopped.

    .venv/bin/python -m benchmarks.overhead.memory [--policy PATH] [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.overhead import targets
from benchmarks.overhead.procs import (
    REPO_ROOT,
    BenchError,
    Fleet,
    Server,
    free_ports,
    run_reported,
    tree_maps_mention,
    tree_rss_bytes,
    wait_ready,
)
from benchmarks.overhead.report import uses_encoder
from benchmarks.overhead.surfaces import CHAT, PROMPT

LIMIT_MB = 150.0  # a policy without encoder signals (configs/default.yaml)
LIMIT_ENCODER_MB = 250.0  # a policy with embedding or domain signals
MB = 1024 * 1024
REQUEST_TIMEOUT_S = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Gateway RSS after a warm-up and after N requests.")
    p.add_argument("--policy", type=Path, default=REPO_ROOT / "configs" / "default.yaml")
    p.add_argument("--requests", type=int, default=20_000, help="measured requests")
    p.add_argument("--warmup-requests", type=int, default=200)
    p.add_argument("--connections", type=int, default=8, help="concurrent client connections")
    p.add_argument("--prompts", choices=("vary", "same"), default="vary")
    p.add_argument("--limit-mb", type=float, help="override the limit for the last RSS")
    p.add_argument("--output", type=Path, default=targets.HERE / "results" / "memory.json")
    args = p.parse_args(argv)
    if not args.policy.is_file():
        p.error(f"--policy {args.policy}: no such file")
    if not (1 <= args.requests <= 10_000_000 and 0 <= args.warmup_requests <= 1_000_000):
        p.error("--requests must be 1..10000000, --warmup-requests 0..1000000")
    if not 1 <= args.connections <= 256:
        p.error("--connections must be 1..256")
    return args


async def send(server: Server, count: int, connections: int, vary: bool, first: int) -> None:
    """``count`` chat completions over ``connections`` connections; progress every tenth."""
    url = server.base + CHAT.path
    head, tail = CHAT.body.split(PROMPT.encode(), 1)
    step = max(count // 10, 1)
    state = {"next": 0, "done": 0}
    started = time.monotonic()

    async def client(session: aiohttp.ClientSession) -> None:
        while state["next"] < count:
            n = first + state["next"]
            state["next"] += 1
            suffix = f" #{n}".encode() if vary else b""
            body = head + PROMPT.encode() + suffix + tail
            async with session.post(url, data=body, headers=CHAT.headers) as answer:
                payload = await answer.read()
                if answer.status != 200:
                    raise BenchError(f"request {n}: {answer.status} {payload[:300]!r}")
            state["done"] += 1
            if state["done"] % step == 0 and count >= 1000:
                rss = (tree_rss_bytes(server.pid) or 0) / MB
                rate = state["done"] / (time.monotonic() - started)
                print(f"  {state['done']:>8,}/{count:,}  {rate:,.0f} req/s  RSS {rss:.1f} MB")

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            await asyncio.gather(*(client(session) for _ in range(connections)))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BenchError(f"request to {url} failed: {exc!r}") from exc
    server.check_alive("during the run")


def rss_mb(server: Server) -> float:
    rss = tree_rss_bytes(server.pid)
    if rss is None:
        raise BenchError("no /proc: RSS cannot be read on this system")
    return rss / MB


def bench(args: argparse.Namespace, fleet: Fleet, report: dict[str, Any]) -> int:
    targets.LOGS.mkdir(parents=True, exist_ok=True)
    up_port, gw_port = free_ports(2)
    options = targets.Options(args.policy.resolve(), None, chunks=20, chunk_gap_ms=1.0)
    upstream = fleet.add(targets.upstream_server(up_port, options))
    gateway = fleet.add(targets.gateway_server(gw_port, args.policy.resolve(), upstream.base))
    report["commands"] = {s.name: s.cmd for s in fleet.servers}
    wait_ready(upstream, health=False)
    wait_ready(gateway, health=True)
    vary = args.prompts == "vary"
    print(f"gateway {gateway.base}, policy {args.policy}, pid {gateway.pid}")
    asyncio.run(send(gateway, args.warmup_requests, args.connections, vary, 0))
    first = rss_mb(gateway)
    print(f"RSS after {args.warmup_requests} warm-up requests: {first:.1f} MB")
    asyncio.run(send(gateway, args.requests, args.connections, vary, args.warmup_requests))
    last = rss_mb(gateway)
    torch = tree_maps_mention(gateway.pid, "libtorch")
    encoder = uses_encoder(args.policy)
    limit = args.limit_mb or (LIMIT_ENCODER_MB if encoder else LIMIT_MB)
    ok = last < limit
    report |= {
        "rss_mb_after_warmup": first,
        "rss_mb_after_requests": last,
        "growth_mb": last - first,
        "limit_mb": limit,
        "policy_uses_encoder": encoder,
        "torch_loaded": torch,
        "verdict": "PASS" if ok else "FAIL",
    }
    growth = f"growth {last - first:+.1f} MB"
    print(f"RSS after {args.requests:,} more requests: {last:.1f} MB ({growth})")
    print(f"torch loaded in the server: {'yes' if torch else 'no'}")
    print(f"RSS {last:.1f} MB  (limit < {limit:.0f} MB)  {report['verdict']}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    fleet = Fleet()
    return run_reported(report, args.output, lambda: bench(args, fleet, report), fleet)


if __name__ == "__main__":
    sys.exit(main())
