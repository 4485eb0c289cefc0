"""One wrk run against one server: its latency percentiles, requests/s and CPU/request.

Any non-2xx answer, socket error or zero requests makes the run invalid (BenchError): a
benchmark of errors measures the error path, not the gateway.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.overhead.procs import BenchError, Server, tree_cpu_seconds
from benchmarks.overhead.surfaces import CHAT

WRK_REQUEST_TIMEOUT_S = 10  # per request, inside wrk
WRK_GRACE_S = 30.0  # wall-clock slack on top of the duration before wrk is killed

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PCT_RE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_TOTAL_RE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKERR_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass
class WrkResult:
    target: str
    connections: int
    round: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    rps: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    cpu_us_per_request: float | None = None

    @property
    def failure(self) -> str | None:
        problems = []
        if self.requests == 0:
            problems.append("no requests completed")
        if self.non_2xx:
            problems.append(f"{self.non_2xx} non-2xx responses")
        if any(self.socket_errors.values()):
            problems.append(f"socket errors {self.socket_errors}")
        return "; ".join(problems) or None


def parse_wrk(output: str, *, target: str, connections: int, round_no: int) -> WrkResult:
    pct = {int(m[1]): float(m[2]) * _UNIT_MS[m[3]] for m in _PCT_RE.finditer(output)}
    rps = _RPS_RE.search(output)
    total = _TOTAL_RE.search(output)
    if rps is None or total is None or not {50, 90, 99} <= pct.keys():
        raise BenchError(f"could not parse wrk output for {target}:\n{output}")
    non2xx = _NON2XX_RE.search(output)
    sock = _SOCKERR_RE.search(output)
    return WrkResult(
        target=target,
        connections=connections,
        round=round_no,
        p50_ms=pct[50],
        p90_ms=pct[90],
        p99_ms=pct[99],
        rps=float(rps[1]),
        requests=int(total[1]),
        non_2xx=int(non2xx[1]) if non2xx else 0,
        socket_errors=dict(
            zip(
                ("connect", "read", "write", "timeout"),
                (int(x) for x in sock.groups()) if sock else (0, 0, 0, 0),
                strict=True,
            )
        ),
    )


def wrk_version(wrk: str) -> str:
    try:
        out = subprocess.run(
            [wrk, "-v"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0].strip() if out else "unknown"


def run_wrk(
    wrk: str,
    server: Server,
    *,
    target: str,
    connections: int,
    duration: int,
    round_no: int,
    script: Path = CHAT.script,
    path: str = CHAT.path,
) -> WrkResult:
    threads = 1 if connections == 1 else min(2, connections)
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={WRK_REQUEST_TIMEOUT_S}s",
        "--latency",
        "-s",
        str(script),
        server.base + path,
    ]
    cpu_before = tree_cpu_seconds(server.pid)
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + WRK_GRACE_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk against {target} ran past {duration + WRK_GRACE_S:.0f}s") from exc
    cpu_after = tree_cpu_seconds(server.pid)
    if done.returncode != 0:
        raise BenchError(
            f"wrk failed ({done.returncode}) against {target}: {cmd}\n{done.stdout}{done.stderr}"
        )
    result = parse_wrk(done.stdout, target=target, connections=connections, round_no=round_no)
    if cpu_before is not None and cpu_after is not None and result.requests:
        result.cpu_us_per_request = (cpu_after - cpu_before) / result.requests * 1e6
    if (failure := result.failure) is not None:
        raise BenchError(
            f"{target} @ {connections} conn (round {round_no}): {failure}\n{done.stdout}"
            f"\nserver log tail:\n{server.log_tail()}"
        )
    server.check_alive("during the run")
    return result
