"""``server.drain_delay``: on SIGTERM keep serving for a while, with /ready failing.

A load balancer (or a Kubernetes Service) learns that a replica is going away a moment
after the replica is told so. Requests it sends in that moment reach a process that has
stopped accepting, and are refused or reset. With ``drain_delay: N`` the first SIGTERM
only marks the process draining: /ready answers 503 (probes and balancers take it out)
while it keeps accepting for N seconds; then uvicorn's own shutdown runs (stop accepting,
let requests in flight finish within ``shutdown_grace``). A second SIGTERM, or SIGINT,
shuts down at once. The Kubernetes manifests do the same from outside with a preStop
sleep; this is for balancers with no such hook (nginx, compose, plain VMs).

uvicorn installs its signal handlers before the app's lifespan starts; ``install`` (from
the lifespan) wraps uvicorn's SIGTERM handler and calls it after the delay. Signals can
only be handled in the main thread: an app embedded elsewhere (tests) skips the delay.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("router_proxy.server")

Handler = Callable[[int, FrameType | None], Any]


class Drain:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.draining = False
        self._pending: asyncio.TimerHandle | None = None

    def install(self) -> None:
        """Wrap the running server's SIGTERM handler; nothing to do without a delay, off
        the main thread, or when the server installed no handler to wrap."""
        if self.delay <= 0 or threading.current_thread() is not threading.main_thread():
            return
        shutdown = signal.getsignal(signal.SIGTERM)
        if not callable(shutdown):
            return
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self.draining:  # asked twice: go now
                shutdown(signum, frame)
                return
            self.draining = True
            # A signal handler may interrupt the loop anywhere: hand over thread-safely.
            loop.call_soon_threadsafe(self._later, loop, shutdown, signum)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _later(self, loop: asyncio.AbstractEventLoop, shutdown: Handler, signum: int) -> None:
        logger.info("SIGTERM: draining, /ready answers 503; shutting down in %.1f s", self.delay)
        self._pending = loop.call_later(self.delay, shutdown, signum, None)

    def cancel(self) -> None:
        """The server stops for another reason (SIGINT): drop the delayed shutdown."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
