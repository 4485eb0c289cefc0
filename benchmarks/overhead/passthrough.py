"""The thinnest reasonable FastAPI proxy: the baseline the gateway is compared against.

One pooled ``httpx.AsyncClient`` (opened and closed in the lifespan) and one route that
forwards the request body to the upstream and returns the upstream's bytes, status and
content-type. No routing, no validation, no parsing. Served the way the gateway is: uvicorn,
uvloop, httptools, access log off, one worker.

    python -m benchmarks.overhead.passthrough --port 8001 --upstream http://127.0.0.1:9000/v1
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

# Above the 32 concurrent connections the benchmark drives, and the same as the gateway's
# default per-provider ``max_connections``, so both pools behave alike.
POOL_SIZE = 100


def create_app(upstream: str) -> FastAPI:
    target = upstream.rstrip("/") + "/chat/completions"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=POOL_SIZE,
                max_keepalive_connections=POOL_SIZE,
                keepalive_expiry=30.0,
            ),
            timeout=httpx.Timeout(60.0, connect=5.0),
            trust_env=False,
        ) as client:
            app.state.client = client
            yield

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        client: httpx.AsyncClient = request.app.state.client
        body = await request.body()
        upstream_response = await client.post(
            target, content=body, headers={"content-type": "application/json"}
        )
        return Response(
            content=upstream_response.content,
            status_code=upstream_response.status_code,
            media_type=upstream_response.headers.get("content-type", "application/json"),
        )

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--upstream",
        default=os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000/v1"),
        help="OpenAI-compatible base URL, e.g. http://127.0.0.1:9000/v1",
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
