"""An OTLP/HTTP trace sink for the tracing benchmark: accepts ``POST /v1/traces`` and
answers as a collector does (an empty ``ExportTraceServiceResponse``), counting the bytes
it was sent without decoding them, so it costs the shared CPU as little as it can.

    python -m benchmarks.overhead.otlp_sink --port 4318
"""

from __future__ import annotations

import argparse

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    received = {"exports": 0, "bytes": 0}

    async def export(request: web.Request) -> web.Response:
        received["exports"] += 1
        received["bytes"] += len(await request.read())
        # An empty ExportTraceServiceResponse is zero bytes of protobuf.
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(received)

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
