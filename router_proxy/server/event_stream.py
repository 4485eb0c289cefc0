"""EventStreamResponse: an SSE answer sent event block by event block, stopped when the
client leaves, and cut when a client that stopped reading holds it past its deadline.

Starlette's StreamingResponse watches for the client leaving with an anyio task group
per response (uvicorn speaks ASGI 2.3); this does the same with one asyncio task that
waits for ``http.disconnect`` and cancels the sender, which then closes the upstream
stream (its generator sees the cancellation and records a cut stream).

A client that stays connected but stops reading makes the sender wait in ``send`` (the
socket's buffers are full) with the upstream call held open. ``deadline`` (loop time:
the model's ``timeouts.total`` from the call's start) bounds that: once it has passed, a
send that has to wait for the client drops the connection (``ClientConnection.abort``,
since a plain close would wait for the unread bytes too) and closes the upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from router_proxy.server.connection import ClientConnection, connection_of


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        headers: dict[str, str],
        deadline: float | None = None,
        on_overdue: Callable[[], None] | None = None,
    ) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.deadline = deadline
        self.on_overdue = on_overdue  # told before the connection is dropped
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.current_task()
        assert sender is not None
        state = _Watch(sender, connection_of(scope), self.on_overdue)
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        watcher.add_done_callback(lambda _: state.client_left())
        timer = None
        if self.deadline is not None and state.connection is not None:
            timer = asyncio.get_running_loop().call_at(self.deadline, state.overdue)
        try:
            async with aclosing(self.events) as events:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                async for block in events:
                    await state.send(send, block, True)
                await state.send(send, b"", False)
        except asyncio.CancelledError:
            # Our own cancellation (the client left, or was cut) ends the response
            # quietly; any other (shutdown) goes on up.
            if state.cancelled and sender.uncancel() == 0:
                return
            raise
        finally:
            state.done = True
            watcher.cancel()
            if timer is not None:
                timer.cancel()


class _Watch:
    __slots__ = ("cancelled", "connection", "done", "expired", "on_overdue", "sender", "sending")

    def __init__(
        self,
        sender: asyncio.Task[object],
        connection: ClientConnection | None,
        on_overdue: Callable[[], None] | None,
    ) -> None:
        self.sender = sender
        self.connection = connection
        self.on_overdue = on_overdue
        self.done = False  # the sender has finished: nothing left to cancel
        self.cancelled = False
        self.sending = False  # the sender waits in send(): on the client
        self.expired = False  # the deadline has passed

    def client_left(self) -> None:
        if not self.done:
            self.cancelled = True
            self.sender.cancel()

    def overdue(self) -> None:
        self.expired = True
        if self.sending:
            self.cut()

    async def send(self, send: Send, body: bytes, more_body: bool) -> None:
        if self.expired and self.connection is not None and self.connection.write_blocked:
            self.cut()  # past the deadline, this send would wait for the client
        self.sending = True
        await send({"type": "http.response.body", "body": body, "more_body": more_body})
        self.sending = False

    def cut(self) -> None:
        if self.done or self.cancelled:
            return
        if self.on_overdue is not None:
            self.on_overdue()
        if self.connection is not None:
            self.connection.abort()
        self.client_left()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
