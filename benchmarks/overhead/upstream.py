"""A fake OpenAI-compatible upstream that is as cheap as we can reasonably make it.

A raw ``asyncio.Protocol`` HTTP/1.1 server (on uvloop when installed) with httptools doing
the request parsing. Every response is pre-built bytes, so the upstream spends almost no
CPU per request and the benchmark measures the proxy in front of it, not the upstream.

    POST /v1/chat/completions  -> 200, a fixed small chat.completion (with usage)
    GET  /health               -> 200, {"status":"ok"}
    anything else              -> 404

Keep-alive, pipelining and many concurrent connections are supported; the request body is
read (and discarded) by Content-Length or chunked framing, as the parser reports it.

    python -m benchmarks.overhead.upstream --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Final, cast

import httptools

COMPLETION_BODY: Final[bytes] = json.dumps(
    {
        "id": "chatcmpl-bench-0001",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-upstream",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "def rev(xs): return xs[::-1]"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23},
    },
    separators=(",", ":"),
).encode()

HEALTH_BODY: Final[bytes] = b'{"status":"ok"}'
NOT_FOUND_BODY: Final[bytes] = b'{"error":{"message":"not found","type":"invalid_request_error"}}'


def _response(status: str, body: bytes, *, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"connection: {'close' if close else 'keep-alive'}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


# (keep-alive, close) variants of each reply, built once.
RESPONSES: Final[dict[tuple[bytes, bytes], tuple[bytes, bytes]]] = {
    (b"POST", b"/v1/chat/completions"): (
        _response("200 OK", COMPLETION_BODY, close=False),
        _response("200 OK", COMPLETION_BODY, close=True),
    ),
    (b"GET", b"/health"): (
        _response("200 OK", HEALTH_BODY, close=False),
        _response("200 OK", HEALTH_BODY, close=True),
    ),
}
NOT_FOUND: Final[tuple[bytes, bytes]] = (
    _response("404 Not Found", NOT_FOUND_BODY, close=False),
    _response("404 Not Found", NOT_FOUND_BODY, close=True),
)


class UpstreamProtocol(asyncio.Protocol):
    """One instance per connection; httptools calls the ``on_*`` methods while parsing."""

    __slots__ = ("_parser", "_path", "_transport")

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._path = b""

    # asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.write(
                    _response("400 Bad Request", b'{"error":"bad request"}', close=True)
                )
            self._close()

    # httptools callbacks ----------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        self._path += url

    def on_message_complete(self) -> None:
        path = self._path.split(b"?", 1)[0]
        self._path = b""
        keep_alive = self._parser.should_keep_alive()
        pair = RESPONSES.get((self._parser.get_method(), path), NOT_FOUND)
        transport = self._transport
        if transport is None:
            return
        transport.write(pair[0] if keep_alive else pair[1])
        if not keep_alive:
            self._close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        UpstreamProtocol, host, port, backlog=2048, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # plain asyncio still works, just slower
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
