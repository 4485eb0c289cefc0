"""Running the gateway under uvicorn: one process, or a supervisor and N worker processes.

One process (the default) serves the app built here. With ``workers > 1`` uvicorn's
supervisor binds the socket and starts N workers that each build the app from the policy
file (``app_from_env``; the path travels in ROUTER_PROXY_CONFIG) and each watch and reload
it on their own. Their metrics are combined through prometheus_client's multiprocess mode:
a fresh folder made here (PROMETHEUS_MULTIPROC_DIR), removed when the supervisor exits.

SIGTERM drains in-flight requests (up to 30 s) and exits 0 in both modes; with workers,
a worker that cannot start makes the supervisor stop and exit 3 (uvicorn's startup
failure status) instead of restarting it forever. SIGHUP to the supervisor replaces the
workers one by one, each new one loading the policy afresh (one that cannot start leaves
the old worker serving); SIGHUP to a worker, or a file change, reloads in place.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from router_proxy.config.schema import Config
from router_proxy.observability.logging import configure_logging, logging_config
from router_proxy.observability.metrics import MULTIPROC_ENV
from router_proxy.server.app import CONFIG_ENV, app_from_env
from router_proxy.server.http import protocol_options

APP_FACTORY = "router_proxy.server.app:app_from_env"
STARTUP_FAILURE = 3  # uvicorn's exit status for a server that could not start
# Seconds a worker may leave the supervisor's ping unanswered before it is killed and
# replaced (uvicorn's default: 5). A new worker answers only once it has imported the app,
# which takes several seconds on a busy or CPU-throttled machine: at 5 s every worker
# was killed mid-start and replaced, forever (seen at load 8 on 2 cores).
WORKER_HEALTHCHECK_S = 30


@dataclass(frozen=True)
class ServeOptions:
    config_path: Path
    host: str | None = None
    port: int | None = None
    workers: int = 1
    log_level: str = "info"


def serve(config: Config, options: ServeOptions) -> int:
    """Serve until SIGTERM/SIGINT; ``config`` was loaded from ``options.config_path`` to
    check it before any worker starts. Returns the process exit status."""
    # Absolute but not resolved: a ConfigMap's policy.yaml is a symlink through `..data`,
    # which the kubelet swaps on update; the resolved target folder is then deleted, so
    # reloads must keep going through the path as given.
    os.environ[CONFIG_ENV] = str(options.config_path.absolute())
    uvicorn_options: dict[str, Any] = {
        "host": options.host or config.server.host,
        "port": options.port or config.server.port,
        "access_log": False,  # the gateway writes its own JSON line per request
        "server_header": False,
        # Nothing reads the client's address; uvicorn's X-Forwarded-* rewrite per request
        # would be work for nobody.
        "proxy_headers": False,
        "timeout_graceful_shutdown": config.server.shutdown_grace,
        **protocol_options(config.server),
    }
    if options.workers > 1:
        return _serve_workers(options, uvicorn_options)
    configure_logging(options.log_level)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal with the
    # previous handler restored; this one turns that into a clean exit status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(app_from_env(), log_config=None, **uvicorn_options)
    return 0


def _serve_workers(options: ServeOptions, uvicorn_options: dict[str, Any]) -> int:
    configure_logging(options.log_level)  # the supervisor's own lines
    with tempfile.TemporaryDirectory(prefix="router-proxy-metrics-") as metrics_dir:
        # Set before any worker imports prometheus_client: it picks its storage at import.
        os.environ[MULTIPROC_ENV] = metrics_dir
        config = uvicorn.Config(
            APP_FACTORY,
            factory=True,
            workers=options.workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            log_config=logging_config(options.log_level),  # applied in every worker
            **uvicorn_options,
        )
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
    failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    return STARTUP_FAILURE if failed else 0
