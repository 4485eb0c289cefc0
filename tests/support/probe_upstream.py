"""A raw OpenAI-compatible upstream that tells when the gateway lets go of a call.

``FakeUpstream`` answers through Starlette, which hides when a connection closes; this
one is a plain asyncio server (in a background thread) that counts, per model, the calls
in progress and the calls whose connection the gateway closed before their end:

========  ==================================================================
hang      reads the request, never answers; ends when the gateway closes
firehose  a stream of 16 KiB content chunks as fast as the gateway reads them, never
          finishing, until the gateway closes (its writes then fail)
(other)   a chat completion at once ("ok"), keep-alive
========  ==================================================================

``wait_closed(model, n, timeout)`` waits until ``n`` calls of ``model`` were closed by
the gateway, ``wait_in_progress`` until ``n`` are open at once; ``in_progress(model)``
counts the calls still open.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable

CHUNK_TEXT = "x" * 16 * 1024
ANSWER = {
    "id": "chatcmpl-probe",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "probe",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class ProbeUpstream:
    def __init__(self) -> None:
        self.started: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()  # closed by the gateway before their end
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ProbeUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("probe upstream did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)

    def in_progress(self, model: str) -> int:
        with self._lock:
            return self.started[model] - self.closed[model]

    def wait_closed(self, model: str, count: int, timeout: float) -> bool:
        """Whether ``count`` calls of ``model`` were closed within ``timeout`` seconds."""
        return self._wait(lambda: self.closed[model] >= count, timeout)

    def wait_in_progress(self, model: str, count: int, timeout: float) -> bool:
        """Whether ``count`` calls of ``model`` were open at once within ``timeout``."""
        return self._wait(lambda: self.started[model] - self.closed[model] >= count, timeout)

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if done():
                    return True
            time.sleep(0.05)
        return False

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, limit=2**20)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        self._server.close()
        loop.close()

    def _count(self, counter: Counter[str], model: str) -> None:
        with self._lock:
            counter[model] += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                body = await _read_request(reader)
                if body is None:
                    return
                model = str(body.get("model"))
                if model == "hang":
                    await self._hang(reader, model)
                    return
                if model == "firehose":
                    await self._firehose(writer, model)
                    return
                data = json.dumps(ANSWER).encode()
                head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
                writer.write(head.encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _hang(self, reader: asyncio.StreamReader, model: str) -> None:
        self._count(self.started, model)
        try:
            await reader.read()  # until the gateway closes the connection
        finally:
            self._count(self.closed, model)

    async def _firehose(self, writer: asyncio.StreamWriter, model: str) -> None:
        self._count(self.started, model)
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            chunk = {
                "id": "chatcmpl-probe",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "probe",
                "choices": [{"index": 0, "delta": {"content": CHUNK_TEXT}, "finish_reason": None}],
            }
            event = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            piece = b"%x\r\n" % len(event) + event + b"\r\n"
            while True:  # as fast as the gateway reads
                writer.write(piece)
                await writer.drain()
        finally:
            self._count(self.closed, model)


async def _read_request(reader: asyncio.StreamReader) -> dict[str, object] | None:
    """The next request's JSON body on a keep-alive connection; None when it closes."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    raw = await reader.readexactly(length)
    body = json.loads(raw) if raw else {}
    return body if isinstance(body, dict) else {}
