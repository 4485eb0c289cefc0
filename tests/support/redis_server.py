"""A real ``redis-server`` for tests, on a free loopback port, with no persistence.

``with RedisServer() as redis:`` serves on ``redis.url`` until the block ends; ``stop()``
and ``start()`` take it down and bring it back on the same port (an outage: everything
it held is gone, as after a real restart without persistence).

CI installs the server from the system's packages (``.ci/run``). Where it is missing,
``require_redis_server`` fails with a message saying how to get it; it skips instead only
outside CI, so a laptop without Redis can still run the rest of the suite.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import redis

INSTALL_HINT = "redis-server is not installed: apt-get install redis-server (see .ci/run)"


def require_redis_server() -> str:
    """The path of ``redis-server``; skip (outside CI) or fail (in CI) without it."""
    import pytest  # here, not at the top: benchmarks use this module without pytest

    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, executable: str = "redis-server", port: int | None = None) -> None:
        self.executable = executable
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        with self.client() as probe:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.ConnectionError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    output = self.proc.stdout.read().decode() if self.proc.stdout else ""
                    self.proc = None
                    raise RuntimeError(f"redis-server did not start on {self.port}:\n{output}")
                time.sleep(0.02)

    def stop(self) -> None:
        """Kill it (SIGKILL: an outage, not a polite shutdown) and wait for the port."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
