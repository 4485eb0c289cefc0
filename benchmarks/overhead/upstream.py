"""A fake LLM upstream that is as cheap as we can reasonably make it.

A raw ``asyncio.Protocol`` HTTP/1.1 server (on uvloop when installed) with httptools doing
the request parsing. Every answer is pre-built bytes, so the upstream spends almost no CPU
per request and the benchmark measures the proxy in front of it, not the upstream.

    POST /v1/chat/completions  -> 200, a fixed chat.completion (with usage); with
                                  "stream": true in the body, a chat.completion.chunk SSE
                                  stream instead (``--chunks`` chunks ``--chunk-gap-ms``
                                  apart, then a usage chunk and ``data: [DONE]``; each
                                  content chunk's text is the time it was written)
    POST /v1/responses         -> 200, a fixed OpenAI Responses ``response``
    POST /v1/messages          -> 200, a fixed Anthropic Messages ``message``
    GET  /health               -> 200, {"status":"ok"}
    anything else              -> 404

Keep-alive, pipelining and many concurrent connections are supported; the body is read by
Content-Length or chunked framing, as the parser reports it, and looked at only for
``"stream": true``.

    python -m benchmarks.overhead.upstream --port 9000 [--chunks 20 --chunk-gap-ms 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import time
from typing import Any, Final, cast

import httptools

REPLY: Final = "def rev(xs): return xs[::-1]"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


CHAT_BODY: Final = _json(
    {
        "id": "chatcmpl-bench-0001",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-upstream",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23},
    }
)
RESPONSES_BODY: Final = _json(
    {
        "id": "resp_bench_0001",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": "bench-upstream",
        "output": [
            {
                "type": "message",
                "id": "msg_bench_0001",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": REPLY, "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 14, "output_tokens": 9, "total_tokens": 23},
    }
)
MESSAGES_BODY: Final = _json(
    {
        "id": "msg_bench_0001",
        "type": "message",
        "role": "assistant",
        "model": "bench-upstream",
        "content": [{"type": "text", "text": REPLY}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 14, "output_tokens": 9},
    }
)
HEALTH_BODY: Final = b'{"status":"ok"}'
NOT_FOUND_BODY: Final = b'{"error":{"message":"not found","type":"invalid_request_error"}}'
STREAM_RE: Final = re.compile(rb'"stream"\s*:\s*true')


def _response(status: str, body: bytes, *, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"connection: {'close' if close else 'keep-alive'}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


def _pair(status: str, body: bytes) -> tuple[bytes, bytes]:
    """The (keep-alive, close) variants of one reply, built once."""
    return _response(status, body, close=False), _response(status, body, close=True)


CHAT_PATH: Final = b"/v1/chat/completions"
RESPONSES: Final[dict[tuple[bytes, bytes], tuple[bytes, bytes]]] = {
    (b"POST", CHAT_PATH): _pair("200 OK", CHAT_BODY),
    (b"POST", b"/v1/responses"): _pair("200 OK", RESPONSES_BODY),
    (b"POST", b"/v1/messages"): _pair("200 OK", MESSAGES_BODY),
    (b"GET", b"/health"): _pair("200 OK", HEALTH_BODY),
}
NOT_FOUND: Final = _pair("404 Not Found", NOT_FOUND_BODY)


def _http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# Each content chunk's text is "t<ns> ": CLOCK_MONOTONIC (system-wide on Linux) when the
# upstream wrote it, so the client can tell how long every proxy took to relay each chunk.
# In the content because every proxy passes the content through unchanged.
_STAMP: Final = "@STAMP@"
Event = bytes | tuple[bytes, bytes]  # framed bytes, or (before, after) the emission stamp


def build_stream(chunks: int) -> list[Event]:
    """The SSE events of one streamed chat completion: the first carries the role, the
    last the finish reason; then usage, ``[DONE]`` and the terminating zero-length chunk
    (sent with ``[DONE]``)."""
    base = {"id": "chatcmpl-bench-0001", "object": "chat.completion.chunk", "created": 1700000000}
    base["model"] = "bench-upstream"
    events: list[Event] = []
    for i in range(chunks):
        last = i == chunks - 1
        delta = {} if last else {"role": "assistant"} if i == 0 else {}
        if not last:
            delta["content"] = f"t{_STAMP} "
        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
        data = b"data: " + _json(base | {"choices": [choice]}) + b"\n\n"
        before, stamp, after = data.partition(_STAMP.encode())
        events.append((before, after) if stamp else _http_chunk(data))
    usage = {"prompt_tokens": 14, "completion_tokens": chunks, "total_tokens": 14 + chunks}
    events.append(_http_chunk(b"data: " + _json(base | {"choices": [], "usage": usage}) + b"\n\n"))
    events.append(_http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    return events


def _frame(event: Event) -> bytes:
    if isinstance(event, bytes):
        return event
    return _http_chunk(event[0] + str(time.monotonic_ns()).encode() + event[1])


STREAM_HEAD: Final = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n"
    b"connection: keep-alive\r\n"
    b"\r\n"
)


class UpstreamProtocol(asyncio.Protocol):
    """One instance per connection; httptools calls the ``on_*`` methods while parsing."""

    __slots__ = ("_body", "_parser", "_path", "_stream", "_stream_task", "_transport")

    def __init__(self, stream: list[Event], gap_s: float) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._path = b""
        self._body = bytearray()
        self._stream = (stream, gap_s)
        self._stream_task: asyncio.Task[None] | None = None

    # asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._stream_task is not None:
            self._stream_task.cancel()

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

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        path = self._path.split(b"?", 1)[0]
        body, self._path, self._body = self._body, b"", bytearray()
        transport = self._transport
        if transport is None:
            return
        method = self._parser.get_method()
        if method == b"POST" and path == CHAT_PATH and STREAM_RE.search(body):
            # Later requests on this connection wait until the stream is done, so pipelined
            # answers cannot interleave.
            transport.pause_reading()
            self._stream_task = asyncio.ensure_future(self._send_stream(transport))
            return
        keep_alive = self._parser.should_keep_alive()
        pair = RESPONSES.get((method, path), NOT_FOUND)
        transport.write(pair[0] if keep_alive else pair[1])
        if not keep_alive:
            self._close()

    async def _send_stream(self, transport: asyncio.Transport) -> None:
        events, gap_s = self._stream
        transport.write(STREAM_HEAD + _frame(events[0]))
        for event in events[1:]:
            await asyncio.sleep(gap_s)
            if transport.is_closing():
                return
            transport.write(_frame(event))
        self._stream_task = None
        transport.resume_reading()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


async def serve(host: str, port: int, chunks: int, gap_s: float) -> None:
    loop = asyncio.get_running_loop()
    stream = build_stream(chunks)
    server = await loop.create_server(
        lambda: UpstreamProtocol(stream, gap_s), host, port, backlog=2048, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--chunk-gap-ms", type=float, default=1.0, help="pause between chunks")
    args = parser.parse_args(argv)
    if args.chunks < 2:
        parser.error("--chunks must be at least 2 (a first and a last chunk)")
    coro = serve(args.host, args.port, args.chunks, args.chunk_gap_ms / 1000)
    try:
        import uvloop
    except ImportError:  # plain asyncio still works, just slower
        asyncio.run(coro)
    else:
        uvloop.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
