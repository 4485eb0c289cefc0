"""The floor: the thinnest OpenAI-compatible passthrough Python can serve.

The gateway's overhead is measured as a ratio against this. It parses nothing, routes
nothing, logs nothing: every POST goes to the same path on one upstream, through one
pooled aiohttp session opened in the lifespan, with the request's body bytes; the answer's
bytes, status and content-type come back. A streamed answer (``text/event-stream``) is
relayed chunk by chunk as it arrives (``iter_any``). FastAPI, like the gateway, served by
uvicorn with uvloop and httptools, one worker, no access log.

    python -m benchmarks.overhead.floor --port 8001 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

# Above the connections the benchmark drives, so the pool never queues a request.
POOL_SIZE = 200
# Headers an upstream needs to read the body (Anthropic wants its version header).
FORWARDED = ("content-type", "anthropic-version")
SURFACE_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages")


def create_app(upstream: str) -> FastAPI:
    base = upstream.rstrip("/")
    state: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=POOL_SIZE)
        async with aiohttp.ClientSession(connector=connector) as session:
            state["session"] = session
            yield

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def relay(request: Request) -> Response:
        headers = {k: v for k in FORWARDED if (v := request.headers.get(k)) is not None}
        answer = await state["session"].post(
            base + request.scope["path"], data=await request.body(), headers=headers
        )
        media_type = answer.headers.get("content-type", "application/json")
        if media_type.startswith("text/event-stream"):
            return StreamingResponse(_chunks(answer), answer.status, media_type=media_type)
        try:
            return Response(await answer.read(), answer.status, media_type=media_type)
        finally:
            answer.release()

    # One plain route per surface path (a path pattern costs a regex and a conversion per
    # request: the floor must not be slower than it needs to be), then any other path.
    for path in SURFACE_PATHS:
        app.add_api_route(path, relay, methods=["POST"])
    app.add_api_route("/{path:path}", relay, methods=["POST"])
    return app


async def _chunks(answer: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.content.iter_any():
            yield chunk
    finally:
        answer.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--upstream", required=True, help="the upstream's root URL, e.g. http://127.0.0.1:9000"
    )
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        workers=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
