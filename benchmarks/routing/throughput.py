"""Gateway requests/s at 32 connections: embedding policy vs keyword-only policy, same
upstream, interleaved rounds, prompts varying on every request (see run.py)."""

from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.overhead import procs, wrkrun

HERE = Path(__file__).resolve().parent
OVERHEAD = HERE.parent / "overhead"

TARGET = 0.8


def compare_policies(rounds: int, duration: int, connections: int = 32) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    fleet = procs.Fleet()
    logs = HERE / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    up_port, kw_port, emb_port = procs.free_ports(3)
    url = f"http://127.0.0.1:{up_port}/v1"
    py = sys.executable
    try:
        upstream = fleet.add(
            procs.Server(
                "upstream",
                [py, str(OVERHEAD / "upstream.py"), "--port", str(up_port)],
                up_port,
                logs / "upstream.log",
            )
        )
        gateways = {
            name: fleet.add(
                procs.Server(
                    name,
                    [
                        py,
                        "-m",
                        "router_proxy",
                        "serve",
                        "--config",
                        str(policy),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                    ],
                    port,
                    logs / f"{name}.log",
                    env={"UPSTREAM_URL": url},
                )
            )
            for name, policy, port in (
                ("keyword", OVERHEAD / "policy.yaml", kw_port),
                ("embedding", HERE / "policies" / "embedding.yaml", emb_port),
            )
        }
        procs.wait_ready(upstream, health=False)
        for server in gateways.values():
            procs.wait_ready(server, health=True)
        rps: dict[str, list[float]] = {name: [] for name in gateways}
        for round_no in range(1, rounds + 1):
            for name, server in gateways.items():
                result = wrkrun.run_wrk(
                    wrk,
                    server,
                    target=name,
                    connections=connections,
                    duration=duration,
                    round_no=round_no,
                    script=HERE / "varied.lua",
                )
                rps[name].append(result.rps)
                print(
                    f"[throughput round {round_no}/{rounds}] {name:<9} {result.rps:8.1f} req/s",
                    file=sys.stderr,
                )
    finally:
        fleet.stop_all()
    kw, emb = statistics.median(rps["keyword"]), statistics.median(rps["embedding"])
    ratio = emb / kw
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(
        f"req/s @{connections}: keyword {kw:.1f}  embedding {emb:.1f}  ratio {ratio:.2f}x "
        f"(target >= {TARGET}x) {verdict}"
    )
    return {"keyword_rps": kw, "embedding_rps": emb, "ratio": ratio, "rounds": rps}
