"""The app factory: the current Runtime in a slot, providers opened and closed with the
lifespan, and live reload (file watch, SIGHUP, POST /admin/reload) when a path is known."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from router_proxy import __version__
from router_proxy.config.load import load_config
from router_proxy.config.schema import Config, CorsConfig
from router_proxy.observability.metrics import forget_dead_workers, worker_exiting
from router_proxy.reload import Reloader
from router_proxy.runtime import Runtime, RuntimeSlot
from router_proxy.server.admin import router as admin_router
from router_proxy.server.drain import Drain
from router_proxy.server.errors import install_error_handlers
from router_proxy.server.fast_path import GatewayApp, SurfaceEndpoint
from router_proxy.server.openapi import install_openapi
from router_proxy.server.routes import SURFACE_ROUTES, router

CONFIG_ENV = "ROUTER_PROXY_CONFIG"
logger = logging.getLogger("router_proxy.server")


def create_app(
    config: Config, *, config_path: Path | None = None, env: Mapping[str, str] | None = None
) -> FastAPI:
    """``config_path`` enables reloading from that file (``env`` interpolates it)."""
    slot = RuntimeSlot(Runtime.build(config))
    reloader = Reloader(slot, config_path, env) if config_path is not None else None
    drain = Drain(config.server.drain_delay)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        forget_dead_workers()
        await slot.current.start()
        stop = asyncio.Event()
        watcher = None
        if reloader is not None and config.server.watch_config:
            watcher = asyncio.create_task(reloader.watch(stop))
        hangup = _on_sighup(reloader)
        drain.install()
        try:
            yield
        finally:
            drain.cancel()
            stop.set()
            if watcher is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(watcher, timeout=5)
            if hangup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await slot.current.aclose()  # shutting down: nothing shares its resources now
            worker_exiting()

    app = GatewayApp(
        title="router-proxy",
        version=__version__,
        description="OpenAI-compatible gateway that routes each request by YAML policy",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.slot = slot
    app.state.reloader = reloader
    app.state.drain = drain
    install_error_handlers(app)
    install_openapi(app, config)
    app.include_router(router)
    app.include_router(admin_router)
    cors = config.server.cors
    if cors is not None:
        app.add_middleware(CORSMiddleware, **_cors_options(cors))
    for path, surface in SURFACE_ROUTES.items():
        endpoint: ASGIApp = SurfaceEndpoint(surface, slot)
        if cors is not None:
            endpoint = CORSMiddleware(endpoint, **_cors_options(cors))
        app.fast_routes[path] = endpoint
    return app


def _cors_options(cors: CorsConfig) -> dict[str, Any]:
    return {
        "allow_origins": cors.allow_origins,
        "allow_methods": cors.allow_methods,
        "allow_headers": cors.allow_headers,
        "allow_credentials": cors.allow_credentials,
        "expose_headers": cors.expose_headers,
        "max_age": cors.max_age,
    }


def _on_sighup(reloader: Reloader | None) -> bool:
    """SIGHUP reloads the policy; only possible when the loop runs in the main thread."""
    if reloader is None:
        return False
    tasks: set[asyncio.Task[object]] = set()

    def handle() -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(reloader.reload("sighup"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, handle)
    except (RuntimeError, NotImplementedError, ValueError):
        return False  # not the main thread (embedded in tests) or no signals here
    return True


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and worker processes: the config path comes from
    ROUTER_PROXY_CONFIG, because uvicorn's workers re-import the app by name."""
    path = Path(os.environ[CONFIG_ENV])
    config, _ = load_config(path)
    app = create_app(config, config_path=path)
    # The process serves this app until it exits: what was built so far (modules,
    # config, encoders) is kept out of the collector's scans, which otherwise pause
    # requests now and then to walk it all again.
    gc.collect()
    gc.freeze()
    return app
