"""What several calls per request cost in latency: cascades and aggregates through
``router-proxy serve`` (its own process) in front of a mock upstream that answers every
call after a fixed delay (``--upstream-ms``), beside a single call.

Scenarios, interleaved round by round (one request at a time):

=================  ==========================================  ======  =====
scenario           decision (stages)                           stages  calls
=================  ==========================================  ======  =====
single             static [expensive]                          1       1
cascade-easy       [[cheap-a, cheap-b], [expensive]], agree    1       2
cascade-hard       same; the cheap pair disagrees              2       3
sequential-hard    [[cheap-a], [cheap-b], [expensive]]         3       3
vote               aggregate [cheap-a, cheap-b, expensive]     1       3
refine             aggregate [cheap-a, cheap-b] + refiner      2       3
=================  ==========================================  ======  =====

and the same with ``stream: true`` for single, cascade-easy (decided, then replayed) and
cascade-hard (the last stage relayed live): time to the first byte.

    python -m benchmarks.multicall.run [--rounds 60] [--upstream-ms 50]

Prints a Markdown table (and writes it to results/latest.md): p50 and p90 latency, the
p50 beside a single call's, and per stage added: that difference per extra stage less
the upstream's delay (what one more stage costs beyond the model's own time; each stage
waits for its slowest call, calls within a stage run in parallel).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

from benchmarks.multicall.upstream import MockUpstream

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
POLICY = """\
providers:
  mock-http: {{type: openai, base_url: "{upstream}/v1"}}
models:
  cheap-a: {{provider: mock-http, cost: {{input_per_mtok: 0.1, output_per_mtok: 0.2}}}}
  cheap-b: {{provider: mock-http, cost: {{input_per_mtok: 0.1, output_per_mtok: 0.2}}}}
  expensive: {{provider: mock-http, cost: {{input_per_mtok: 10, output_per_mtok: 30}}}}
decisions:
  - {{name: single, when: true, route: {{candidates: [expensive]}}}}
  - name: cascade
    when: false
    route: {{algorithm: cascade, params: {{stages: [[cheap-a, cheap-b], [expensive]]}}}}
  - name: sequential
    when: false
    route: {{algorithm: cascade, params: {{stages: [[cheap-a], [cheap-b], [expensive]]}}}}
  - name: vote
    when: false
    route: {{algorithm: aggregate, params: {{models: [cheap-a, cheap-b, expensive]}}}}
  - name: refine
    when: false
    route:
      algorithm: aggregate
      params: {{models: [cheap-a, cheap-b], combine: refine, refiner: {{model: expensive}}}}
"""
EASY, HARD = "easy: what is 2 + 2?", "hard: what is the twelfth number?"


@dataclass
class Scenario:
    name: str
    decision: str
    question: str
    stages: int
    stream: bool = False
    seconds: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)


SCENARIOS = (
    Scenario("single", "single", EASY, 1),
    Scenario("cascade-easy", "cascade", EASY, 1),
    Scenario("cascade-hard", "cascade", HARD, 2),
    Scenario("sequential-hard", "sequential", HARD, 3),
    Scenario("vote", "vote", HARD, 1),
    Scenario("refine", "refine", HARD, 2),
    Scenario("single (stream, first byte)", "single", EASY, 1, stream=True),
    Scenario("cascade-easy (stream, first byte)", "cascade", EASY, 1, stream=True),
    Scenario("cascade-hard (stream, first byte)", "cascade", HARD, 2, stream=True),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_gateway(policy: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    path = workdir / "policy" / "policy.yaml"
    path.parent.mkdir()
    path.write_text(policy)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "router_proxy", "serve", "--config", str(path)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = (workdir / "gateway.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/ready", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the gateway did not start: see {workdir / 'gateway.log'}")


def measure(client: httpx.Client, scenario: Scenario) -> tuple[float, int]:
    """Seconds to the whole answer (a stream: to its first byte), and the calls made."""
    body = {
        "model": scenario.decision,
        "messages": [{"role": "user", "content": scenario.question}],
        "stream": scenario.stream,
    }
    started = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=body) as answer:
        chunks = answer.iter_bytes()
        next(chunks)
        elapsed = time.perf_counter() - started
        for _ in chunks:
            pass
        if answer.status_code != 200:
            raise RuntimeError(f"{scenario.name}: {answer.status_code}")
        calls = answer.headers.get("x-router-calls")
    return elapsed, len(calls.split(",")) if calls else 1


def report(scenarios: tuple[Scenario, ...], upstream_ms: float, rounds: int) -> str:
    single = statistics.median(scenarios[0].seconds) * 1000
    lines = [
        f"Upstream delay {upstream_ms:g} ms per call; {rounds} rounds; one request at a time.",
        "",
        "| scenario | stages | calls/request | p50 ms | p90 ms | p50 - single p50 (ms) "
        "| per added stage, beyond the upstream delay (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in scenarios:
        ms = sorted(x * 1000 for x in s.seconds)
        p50, p90 = statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]
        extra = p50 - single
        per_stage = f"{extra / (s.stages - 1) - upstream_ms:+.1f}" if s.stages > 1 else "-"
        calls = statistics.mean(s.calls)
        lines.append(
            f"| {s.name} | {s.stages} | {calls:.1f} | {p50:.1f} | {p90:.1f} | {extra:+.1f} "
            f"| {per_stage} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--upstream-ms", type=float, default=50.0)
    args = parser.parse_args()
    upstream = MockUpstream(args.upstream_ms)
    upstream.start()
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_gateway(POLICY.format(upstream=upstream.base_url), Path(tmp))
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                for _ in range(args.warmup):
                    for scenario in SCENARIOS:
                        measure(client, scenario)
                for _ in tqdm(range(args.rounds), desc="rounds", file=sys.stderr):
                    for scenario in SCENARIOS:
                        seconds, calls = measure(client, scenario)
                        scenario.seconds.append(seconds)
                        scenario.calls.append(calls)
        finally:
            proc.terminate()
            proc.wait(30)
            upstream.stop()
    table = report(SCENARIOS, args.upstream_ms, args.rounds)
    print(table)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
