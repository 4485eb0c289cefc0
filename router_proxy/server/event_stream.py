"""EventStreamResponse: an SSE answer sent event block by event block, stopped when the
client leaves.

Starlette's StreamingResponse watches for the client leaving with an anyio task group
per response (uvicorn speaks ASGI 2.3); this does the same with one asyncio task that
waits for ``http.disconnect`` and cancels the sender, which then closes the upstream
stream (its generator sees the cancellation and records a cut stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[bytes, None], headers: dict[str, str]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.current_task()
        assert sender is not None
        state = _Watch()
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        watcher.add_done_callback(lambda _: state.client_left(sender))
        try:
            async with aclosing(self.events) as events:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                async for block in events:
                    await send({"type": "http.response.body", "body": block, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Our own cancellation (the client left) ends the response quietly; any other
            # (shutdown) goes on up.
            if state.cancelled and sender.uncancel() == 0:
                return
            raise
        finally:
            state.done = True
            watcher.cancel()


class _Watch:
    __slots__ = ("cancelled", "done")

    def __init__(self) -> None:
        self.done = False  # the sender has finished: nothing left to cancel
        self.cancelled = False

    def client_left(self, sender: asyncio.Task[object]) -> None:
        if not self.done:
            self.cancelled = True
            sender.cancel()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
