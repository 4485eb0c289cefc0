"""The servers a benchmark starts: start, wait until ready, measure (CPU, RSS), stop.

Every wait is bounded, and every server runs in its own session so that a Ctrl-C reaches
only the harness, which then stops each server's whole process group itself.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from benchmarks.overhead.surfaces import CHAT, Surface

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0


class BenchError(RuntimeError):
    """The run itself is invalid (as opposed to a target being missed)."""


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    startup_timeout_s: float = STARTUP_TIMEOUT_S
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else -1

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def check_alive(self, during: str) -> None:
        if not self.alive():
            code = self.proc.returncode if self.proc else None
            raise BenchError(
                f"{self.name} exited {during} (status {code}); "
                f"log {self.log_path}:\n{self.log_tail()}"
            )


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


def request(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10.0)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(server: Server, *, health: bool, surface: Surface = CHAT) -> None:
    """Poll until the server answers (its health path first when ``health``), then require
    one real request of ``surface`` to come back 200 in that surface's shape. A 404 there
    means the server has no such route: the run fails at once, saying so."""
    deadline = time.monotonic() + server.startup_timeout_s
    probes: list[tuple[str, str, bytes | None]] = []
    if health:
        probes.append(("GET", server.health_path, None))
    probes.append(("POST", surface.path, surface.body))
    last = "no answer yet"
    for method, path, body in probes:
        while True:
            server.check_alive("during startup")
            try:
                status, payload = request(server.port, method, path, body, surface.headers)
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200 and (body is None or surface.marker in payload):
                    break
                last = f"{method} {path} -> {status} {payload[:300]!r}"
                if body is not None and status == 404:
                    raise BenchError(
                        f"{server.name} has no {path} route (404): the {surface.name} surface "
                        f"is not served by this checkout ({last})"
                    )
                if body is not None and status != 503 and status >= 400:
                    # A running server that rejects the benchmark request will not improve.
                    raise BenchError(f"{server.name} answered {last}")
                if body is not None and status == 200:
                    raise BenchError(
                        f"{server.name} answered {path} without {surface.marker!r}: {last}"
                    )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{server.name} not ready after {server.startup_timeout_s:.0f}s ({last}); "
                    f"log {server.log_path}:\n{server.log_tail()}"
                )
            time.sleep(0.1)


# Process-tree figures (Linux /proc; None elsewhere) ------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of one process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _tree(root: int) -> dict[int, float] | None:
    """CPU seconds of ``root`` and each of its live descendants (worker processes)."""
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
    return {pid: stats[pid][1] for pid in tree}


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds used so far by ``root`` and its live descendants."""
    tree = _tree(root)
    return None if tree is None else sum(tree.values())


def tree_rss_bytes(root: int) -> int | None:
    """Resident memory of ``root`` and its live descendants (VmRSS, summed)."""
    tree = _tree(root)
    if tree is None:
        return None
    total = 0
    for pid in tree:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def tree_maps_mention(root: int, needle: str) -> bool | None:
    """Whether any process of the tree has a file mapped whose path contains ``needle``
    (e.g. ``libtorch``: torch was imported)."""
    tree = _tree(root)
    if tree is None:
        return None
    for pid in tree:
        with contextlib.suppress(OSError), Path(f"/proc/{pid}/maps").open() as maps:
            if any(needle in line for line in maps):
                return True
    return False


# Signals -----------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes Ctrl-C's path, so the servers are stopped on either."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_reported(
    report: dict[str, Any], output: Path, bench: Callable[[], int], fleet: Fleet | None = None
) -> int:
    """Run ``bench`` (exit status) with SIGTERM as Ctrl-C, stop the servers whatever
    happens, and write ``report`` (with the error, if any) to ``output``."""
    status = 2
    try:
        with sigterm_as_interrupt():
            status = bench()
    except BenchError as exc:
        report["error"] = str(exc)
        print(f"\nFAILED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        report["error"] = "interrupted"
        print("\ninterrupted; stopping servers", file=sys.stderr)
        status = 130
    finally:
        if fleet is not None:
            fleet.stop_all()
        report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results: {output}")
    return status
