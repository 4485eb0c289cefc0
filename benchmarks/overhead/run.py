"""Gateway overhead benchmark: the gateway against the thinnest possible passthrough.

Starts, on free loopback ports:

* ``upstream.py``     a fake OpenAI-compatible upstream that costs almost nothing per request,
* ``passthrough.py``  a bare FastAPI + httpx proxy in front of it (the baseline),
* the gateway         ``python -m router_proxy serve`` with ``policy.yaml``, in front of the
                      same upstream,

then drives both proxies with ``wrk`` (``post.lua``), interleaved round by round so machine
noise hits both alike::

    for each round: passthrough @1 conn, gateway @1 conn, passthrough @N conns, gateway @N conns

and reports the median over rounds of p50/p90/p99 latency and requests/s, the
gateway/passthrough ratios, and PASS/FAIL against the targets (p50 <= 1.3x at 1 connection,
req/s >= 0.7x at 32 connections). Results go to ``results/overhead.json``.

Exit status: 0 all targets met, 1 a target missed, 2 the run itself failed (a server did
not start, wrk missing, any non-2xx response or socket error).

    .venv/bin/python -m benchmarks.overhead.run [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
RESULTS_DIR = HERE / "results"
LUA_SCRIPT = HERE / "post.lua"
POLICY = HERE / "policy.yaml"
CHAT_PATH = "/v1/chat/completions"
# Must match post.lua; used for the readiness probes.
PROBE_BODY = (
    b'{"model":"auto","messages":[{"role":"user",'
    b'"content":"Write a python function that reverses a list"}]}'
)

P50_RATIO_LIMIT = 1.3  # gateway p50 <= 1.3x passthrough p50 at 1 connection
RPS_RATIO_LIMIT = 0.7  # gateway req/s >= 0.7x passthrough req/s at N connections

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
WRK_REQUEST_TIMEOUT_S = 10  # per request, inside wrk
WRK_GRACE_S = 30.0  # wall-clock slack on top of --duration before wrk is killed

TARGETS = ("passthrough", "gateway")


class BenchError(RuntimeError):
    """The run itself is invalid (as opposed to a target being missed)."""


# ---------------------------------------------------------------------------------------
# Subprocesses
# ---------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        log = self.log_path.open("wb")
        try:
            # Own session: a Ctrl-C in the terminal reaches only this harness, which then
            # stops every server itself, process group and all.
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class Fleet:
    """Every server this run started; stopping is idempotent and also runs at exit."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        atexit.register(self.stop_all)

    def add(self, server: Server) -> Server:
        self.servers.append(server)
        server.start()
        return server

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out right now (all held open together so they differ)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _request(port: int, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(server: Server, *, health: bool) -> None:
    """Poll until the server answers (GET /health first when ``health``), then require one
    real chat completion to come back 200 with ``choices``. Bounded by STARTUP_TIMEOUT_S."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    probes: list[tuple[str, str, bytes | None]] = []
    if health:
        probes.append(("GET", "/health", None))
    probes.append(("POST", CHAT_PATH, PROBE_BODY))
    last = "no answer yet"
    for method, path, body in probes:
        while True:
            if not server.alive():
                code = server.proc.returncode if server.proc else None
                raise BenchError(
                    f"{server.name} exited during startup (status {code}); "
                    f"log {server.log_path}:\n{server.log_tail()}"
                )
            try:
                status, payload = _request(server.port, method, path, body)
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200 and (body is None or b'"choices"' in payload):
                    break
                last = f"{method} {path} -> {status} {payload[:300]!r}"
                if status != 503 and path != "/health" and status >= 400:
                    # A running server that rejects the benchmark request will not improve.
                    raise BenchError(f"{server.name} answered {last}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{server.name} not ready after {STARTUP_TIMEOUT_S:.0f}s ({last}); "
                    f"log {server.log_path}:\n{server.log_tail()}"
                )
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------
# CPU accounting (Linux /proc; None elsewhere)
# ---------------------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of one process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds used so far by ``root`` and its live descendants (worker processes)."""
    if not Path("/proc").is_dir():
        return None
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = st
    if root not in stats:
        return None
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(stats[pid][1] for pid in tree)


# ---------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------

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
    script: Path = LUA_SCRIPT,
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
        server.base + CHAT_PATH,
    ]
    pid = server.proc.pid if server.proc else -1
    cpu_before = tree_cpu_seconds(pid)
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + WRK_GRACE_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk against {target} ran past {duration + WRK_GRACE_S:.0f}s") from exc
    cpu_after = tree_cpu_seconds(pid)
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
    if not server.alive():
        raise BenchError(f"{target} died during the run; log:\n{server.log_tail()}")
    return result


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------


def summarize(runs: list[WrkResult], target: str, connections: int) -> dict[str, float]:
    mine = [r for r in runs if r.target == target and r.connections == connections]
    out = {
        key: statistics.median(getattr(r, key) for r in mine)
        for key in ("p50_ms", "p90_ms", "p99_ms", "rps")
    }
    cpu = [r.cpu_us_per_request for r in mine if r.cpu_us_per_request is not None]
    if cpu:
        out["cpu_us_per_request"] = statistics.median(cpu)
    return out


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def print_table(summary: dict[str, dict[str, dict[str, float]]], high: int) -> None:
    rows: list[tuple[str, str, str]] = [
        ("p50 ms", "c1", "p50_ms"),
        ("p90 ms", "c1", "p90_ms"),
        ("p99 ms", "c1", "p99_ms"),
        ("req/s", "c1", "rps"),
        ("CPU us/req", "c1", "cpu_us_per_request"),
        ("p50 ms", f"c{high}", "p50_ms"),
        ("p99 ms", f"c{high}", "p99_ms"),
        ("req/s", f"c{high}", "rps"),
        ("CPU us/req", f"c{high}", "cpu_us_per_request"),
    ]
    print()
    print(f"{'median over rounds':<24}{'passthrough':>13}{'gateway':>13}{'gw/pt':>9}")
    for label, conns, key in rows:
        pt = summary["passthrough"][conns].get(key)
        gw = summary["gateway"][conns].get(key)
        if pt is None or gw is None:
            continue
        name = f"{label} @{conns[1:]} conn{'s' if conns != 'c1' else ''}"
        ratio = f"{gw / pt:.2f}x" if pt else "-"
        print(f"{name:<24}{_fmt(pt):>13}{_fmt(gw):>13}{ratio:>9}")


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Gateway vs. bare passthrough overhead benchmark (wrk, interleaved rounds)."
    )
    parser.add_argument(
        "--duration", type=int, default=1, help="seconds per measured wrk run (whole seconds)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=15,
        help="interleaved rounds (many short ones cancel machine noise)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="warm-up seconds per target and connection count (0 to skip)",
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="connections for the throughput runs"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "overhead.json", help="JSON results path"
    )
    # Debug aid: a second passthrough stands in for the gateway, to test the harness alone.
    parser.add_argument("--fake-gateway", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be 1..50")
    if not 1 <= args.duration <= 300:
        parser.error("--duration must be 1..300 seconds")
    if not 0 <= args.warmup <= 60:
        parser.error("--warmup must be 0..60 seconds")
    if not 2 <= args.connections <= 1024:
        parser.error("--connections must be 2..1024")
    return args


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "error: `wrk` is not installed or not on PATH.\n"
            "  Debian/Ubuntu: apt-get install -y wrk    macOS: brew install wrk\n"
            "  (see benchmarks/overhead/README.md)",
            file=sys.stderr,
        )
        return 2

    report: dict[str, Any] = {
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": wrk_version(wrk),
        },
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "connections": [1, args.connections],
            "wrk_threads": [1, min(2, args.connections)],
            "fake_gateway": args.fake_gateway,
        },
        "targets": {"p50_ratio_max": P50_RATIO_LIMIT, "rps_ratio_min": RPS_RATIO_LIMIT},
    }
    runs: list[WrkResult] = []
    fleet = Fleet()
    status = 2
    try:
        with sigterm_as_interrupt():
            status = bench(args, wrk, fleet, report, runs)
    except BenchError as exc:
        report["error"] = str(exc)
        print(f"\nFAILED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        report["error"] = "interrupted"
        print("\ninterrupted; stopping servers", file=sys.stderr)
        status = 130
    finally:
        fleet.stop_all()
        report["runs"] = [asdict(r) for r in runs]
        report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results: {args.output}")
    return status


def start_servers(args: argparse.Namespace, fleet: Fleet) -> tuple[Server, Server, Server]:
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    up_port, pt_port, gw_port = free_ports(3)
    upstream_url = f"http://127.0.0.1:{up_port}/v1"
    py = sys.executable
    upstream = fleet.add(
        Server(
            "upstream",
            [py, str(HERE / "upstream.py"), "--port", str(up_port)],
            up_port,
            logs / "upstream.log",
        )
    )

    def passthrough_cmd(port: int) -> list[str]:
        return [py, str(HERE / "passthrough.py"), "--port", str(port), "--upstream", upstream_url]

    passthrough = fleet.add(
        Server("passthrough", passthrough_cmd(pt_port), pt_port, logs / "passthrough.log")
    )
    gateway_cmd = [
        *(py, "-m", "router_proxy", "serve", "--config", str(POLICY)),
        *("--host", "127.0.0.1", "--port", str(gw_port)),
    ]
    gateway = fleet.add(
        Server(
            "gateway",
            passthrough_cmd(gw_port) if args.fake_gateway else gateway_cmd,
            gw_port,
            logs / "gateway.log",
            env={"UPSTREAM_URL": upstream_url},
        )
    )
    print(f"upstream    {upstream.base}  (logs in {logs})")
    print(f"passthrough {passthrough.base}")
    fake = "  [FAKE: a second passthrough]" if args.fake_gateway else ""
    print(f"gateway     {gateway.base}{fake}")
    return upstream, passthrough, gateway


def bench(
    args: argparse.Namespace,
    wrk: str,
    fleet: Fleet,
    report: dict[str, Any],
    runs: list[WrkResult],
) -> int:
    high = args.connections
    upstream, passthrough, gateway = start_servers(args, fleet)
    report["commands"] = {s.name: s.cmd for s in fleet.servers}
    wait_ready(upstream, health=False)
    wait_ready(passthrough, health=False)
    wait_ready(gateway, health=not args.fake_gateway)
    print("all three answer a chat completion")
    servers = {"passthrough": passthrough, "gateway": gateway}

    # The ceiling: the upstream on its own, so a slow upstream cannot hide in the ratios.
    report["upstream_alone"] = {}
    for conns in (1, high):
        r = run_wrk(
            wrk,
            upstream,
            target="upstream",
            connections=conns,
            duration=min(args.duration, 3),
            round_no=0,
        )
        report["upstream_alone"][str(conns)] = asdict(r)
        print(f"upstream alone @{conns:>3} conn: p50 {r.p50_ms:.3f} ms, {r.rps:,.0f} req/s")

    if args.warmup > 0:
        for name in TARGETS:
            for conns in (high, 1):
                run_wrk(
                    wrk,
                    servers[name],
                    target=name,
                    connections=conns,
                    duration=args.warmup,
                    round_no=0,
                )
        print(f"warmed up ({args.warmup}s per target and connection count)")

    for round_no in range(1, args.rounds + 1):
        for conns in (1, high):
            for name in TARGETS:
                label = f"[round {round_no}/{args.rounds}] {name:<11} @{conns:>3} conn"
                print(f"{label} ... ", end="", flush=True)
                r = run_wrk(
                    wrk,
                    servers[name],
                    target=name,
                    connections=conns,
                    duration=args.duration,
                    round_no=round_no,
                )
                runs.append(r)
                cpu = f"  {r.cpu_us_per_request:,.0f} us CPU/req" if r.cpu_us_per_request else ""
                print(f"p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms  {r.rps:,.0f} req/s{cpu}")

    return report_results(report, runs, args.rounds, high)


def report_results(report: dict[str, Any], runs: list[WrkResult], rounds: int, high: int) -> int:
    summary = {name: {f"c{c}": summarize(runs, name, c) for c in (1, high)} for name in TARGETS}
    pt, gw = summary["passthrough"], summary["gateway"]
    p50_ratio = gw["c1"]["p50_ms"] / pt["c1"]["p50_ms"]
    rps_ratio = gw[f"c{high}"]["rps"] / pt[f"c{high}"]["rps"]
    per_round = []
    for round_no in range(1, rounds + 1):
        by = {(r.target, r.connections): r for r in runs if r.round == round_no}
        per_round.append(
            {
                "round": round_no,
                "p50_ratio_1conn": by["gateway", 1].p50_ms / by["passthrough", 1].p50_ms,
                f"rps_ratio_{high}conn": by["gateway", high].rps / by["passthrough", high].rps,
            }
        )
    p50_ok = p50_ratio <= P50_RATIO_LIMIT
    rps_ok = rps_ratio >= RPS_RATIO_LIMIT
    verdict = {
        "p50": "PASS" if p50_ok else "FAIL",
        "rps": "PASS" if rps_ok else "FAIL",
        "overall": "PASS" if p50_ok and rps_ok else "FAIL",
    }
    report["summary"] = summary
    report["ratios"] = {
        "p50_1conn": p50_ratio,
        f"rps_{high}conn": rps_ratio,
        "per_round": per_round,
        # A paired estimate, robust to drift between rounds; informational (the verdict uses
        # the ratio of the medians above).
        "median_of_per_round": {
            key: statistics.median(p[key] for p in per_round)
            for key in ("p50_ratio_1conn", f"rps_ratio_{high}conn")
        },
    }
    report["verdict"] = verdict

    print_table(summary, high)
    print()
    print(
        f"gateway/passthrough p50 @1 conn:     {p50_ratio:.2f}x"
        f"  (target <= {P50_RATIO_LIMIT}x)  {verdict['p50']}"
    )
    print(
        f"gateway/passthrough req/s @{high} conns: {rps_ratio:.2f}x"
        f"  (target >= {RPS_RATIO_LIMIT}x)  {verdict['rps']}"
    )
    spread = ", ".join(
        f"{p['p50_ratio_1conn']:.2f}/{p[f'rps_ratio_{high}conn']:.2f}" for p in per_round
    )
    paired = report["ratios"]["median_of_per_round"]
    print(f"per-round ratios (p50 / req/s): {spread}")
    print(
        f"median of per-round ratios:     {paired['p50_ratio_1conn']:.2f}"
        f" / {paired[f'rps_ratio_{high}conn']:.2f}"
    )
    print(f"overall: {verdict['overall']}")
    return 0 if p50_ok and rps_ok else 1


if __name__ == "__main__":
    sys.exit(main())
