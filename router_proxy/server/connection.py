"""What a request may ask of the client connection it came on.

The gateway's HTTP protocol (``server/http.py``) puts one ``ClientConnection`` per
connection in each request's scope (``connection_of``). Through it a request learns that
its client has gone the moment the protocol does, without a task per request waiting on
``receive()`` (measurable on the hot path), and can drop a connection whose client
stopped reading (``transport.close()`` would wait for the unread bytes to drain:
forever). Served by another ASGI server a scope has none, and a request whose client
left runs to its end as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from router_proxy.errors import ClientClosedRequestError, GatewayError, RequestTimeoutError

CONNECTION_KEY = "router_proxy.connection"


class ClientConnection:
    __slots__ = ("_transport", "_write_paused", "body_timed_out", "on_lost")

    def __init__(self, transport: asyncio.Transport, write_paused: Callable[[], bool]) -> None:
        self._transport = transport
        self._write_paused = write_paused
        # Called once if the connection is lost while set: the request being served sets
        # it, and clears it when it no longer needs to know.
        self.on_lost: Callable[[], None] | None = None
        # The protocol answered 408 and closed: the body did not arrive in time.
        self.body_timed_out = False

    @property
    def write_blocked(self) -> bool:
        """The client is not reading: the next write would wait for it."""
        return self._write_paused()

    def abort(self) -> None:
        """Drop the connection now, unsent bytes included."""
        self._transport.abort()

    def lost(self) -> None:
        """Called by the protocol when the connection is gone."""
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()


def connection_of(scope: Any) -> ClientConnection | None:
    connection: ClientConnection | None = scope.get(CONNECTION_KEY)
    return connection


def gone_error(connection: ClientConnection | None) -> GatewayError:
    """Why a request's client went away, for its log line: the protocol's 408 (the body
    was too slow), else the client's own leaving (499)."""
    if connection is not None and connection.body_timed_out:
        return RequestTimeoutError("The request body did not arrive in time")
    return ClientClosedRequestError("The client closed the connection before the answer")


class CancelOnDisconnect:
    """``with CancelOnDisconnect(connection) as watch:`` cancels the task inside if its
    client leaves meanwhile, so an upstream call is closed rather than run to its timeout
    for nobody. ``watch.left`` tells that cancellation from any other (shutdown)."""

    __slots__ = ("_connection", "_task", "left")

    def __init__(self, connection: ClientConnection | None) -> None:
        self._connection = connection
        self._task: asyncio.Task[Any] | None = None
        self.left = False

    def __enter__(self) -> CancelOnDisconnect:
        if self._connection is not None:
            self._task = asyncio.current_task()
            self._connection.on_lost = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._connection is not None and self._connection.on_lost is self:
            self._connection.on_lost = None
        self._task = None  # no cycle through the task's frame

    def __call__(self) -> None:
        if self._task is not None and not self._task.done():
            self.left = True
            self._task.cancel()
