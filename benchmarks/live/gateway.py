"""The gateway for the live benchmark: ``create_app`` on a policy, with the shadow
sampler's records going to a JSONL file, under uvicorn.

    python -m benchmarks.live.gateway --config policy.yaml --records shadow.jsonl --port 0

The records sink here is a stand-in (a buffered file, flushed at exit) until the records
helper's sinks (router_proxy/records) are wired into the runtime; prints ``port N``.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Mapping
from typing import IO, Any

import orjson
import uvicorn

from router_proxy.config.load import load_config
from router_proxy.server.app import create_app


class JsonlSink:
    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh

    def write(self, record: Mapping[str, Any]) -> None:
        self.fh.write(orjson.dumps(record) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--records", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    config, _ = load_config(args.config)
    app = create_app(config)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"port {sock.getsockname()[1]}", flush=True)
    with open(args.records, "ab") as fh:
        shadow = app.state.slot.current.engine.shadow
        if shadow is not None:
            shadow.sink = JsonlSink(fh)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        server.run(sockets=[sock])


if __name__ == "__main__":
    main()
