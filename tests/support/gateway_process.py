"""A gateway as its own process, as it is deployed: ``python -m router_proxy serve``.

``with GatewayProcess(policy_text, tmp_path) as gw:`` writes the policy to a file, starts
the process on a free loopback port and waits for ``/ready``. Its output (JSON log lines,
stdout and stderr together) goes to a file: ``gw.output()`` reads it back. ``terminate``
sends SIGTERM (a graceful drain), ``wait`` returns the exit status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


class GatewayProcess:
    def __init__(self, policy: str, workdir: Path, name: str = "gateway") -> None:
        self.port = free_port()
        self.config = workdir / name / "policy.yaml"
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(policy)
        # Not beside the policy: the gateway watches that folder for changes.
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting (``wait_ready``): replicas start together."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "router_proxy", "serve", "--config", str(self.config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.base_url + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited at start:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not become ready:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_all(*gateways: GatewayProcess, timeout: float = 30.0) -> None:
    """Start several at once (each takes seconds to import): less wall time."""
    for gateway in gateways:
        gateway.spawn()
    for gateway in gateways:
        gateway.wait_ready(timeout)
