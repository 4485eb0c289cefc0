"""The app factory: one Runtime per config, providers opened and closed with the lifespan."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from router_proxy import __version__
from router_proxy.config.load import load_config
from router_proxy.config.schema import Config
from router_proxy.runtime import Runtime
from router_proxy.server.errors import install_error_handlers
from router_proxy.server.routes import router

CONFIG_ENV = "ROUTER_PROXY_CONFIG"


def create_app(config: Config) -> FastAPI:
    runtime = Runtime.build(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.aclose()

    app = FastAPI(
        title="router-proxy",
        version=__version__,
        description="OpenAI-compatible gateway that routes each request by YAML policy",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and worker processes: the config path comes from
    ROUTER_PROXY_CONFIG, because uvicorn's workers re-import the app by name."""
    config, _ = load_config(os.environ[CONFIG_ENV])
    return create_app(config)
