"""The FastAPI dependency every route takes its runtime from."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from router_proxy.runtime import Runtime, RuntimeSlot


async def current_runtime(request: Request) -> Runtime:
    """The runtime serving now; a request keeps the one it started with. (async: FastAPI
    would run a plain function in its thread pool, a thread hop on every request.)"""
    slot: RuntimeSlot = request.app.state.slot
    return slot.current


CurrentRuntime = Annotated[Runtime, Depends(current_runtime)]
