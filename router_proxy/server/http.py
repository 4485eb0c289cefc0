"""The HTTP/1.1 protocol the gateway is served with: uvicorn's httptools protocol with a
bound on the request head (request line and headers), deadlines for reading the head and
the body, and a ``ClientConnection`` in each request's scope (``server/connection.py``).

httptools itself reads headers of any size into memory, and uvicorn's only header limit
(``h11_max_incomplete_event_size``) applies to its h11 parser alone. This protocol applies
``server.max_header_bytes`` to httptools: a request whose head grows past it is answered
431 with an OpenAI-format error and its connection closed, before the app sees it and
after at most one more read (64 KiB) than the limit is buffered.

uvicorn has no read deadline either: a client that opens a connection and sends nothing,
or trickles its head a byte at a time (slowloris), holds the connection for as long as it
likes. Here a head must be whole ``server.header_timeout`` seconds after the connection
opened or the request's first byte came (408, or a plain close if nothing came), and a
body ``server.body_timeout`` seconds after its head (408). Neither costs a request that
arrives in one read anything: a deadline is armed only when a read ends mid-request.

The limits travel with the protocol class as a ``functools.partial`` (picklable): worker
processes receive the class by reference and its arguments by value.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from router_proxy.config.schema import ServerConfig
from router_proxy.errors import GatewayError, HeaderTooLargeError, RequestTimeoutError
from router_proxy.server.connection import CONNECTION_KEY, ClientConnection

DEFAULT_HEAD_LIMIT = 16 * 1024
_HEADER_OVERHEAD = 4  # ": " and CRLF around each parsed header


@dataclass(frozen=True, slots=True)
class HttpLimits:
    head_bytes: int = DEFAULT_HEAD_LIMIT
    header_timeout: float = 10.0
    body_timeout: float = 30.0


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing (httptools re-raises it wrapped)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        limits: HttpLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or HttpLimits(
            config.h11_max_incomplete_event_size or DEFAULT_HEAD_LIMIT
        )
        self.head_limit = self.limits.head_bytes
        self.in_head = True  # reading a request head (the connection starts with one)
        self.in_body = False  # the head is in, the body is not yet whole
        self.head_read = 0  # bytes read while the head was incomplete
        self.head_too_large = False
        self.deadline: asyncio.TimerHandle | None = None  # of the head or the body
        self.connection: ClientConnection | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.connection = ClientConnection(transport, lambda: self.flow.write_paused)
        self.arm(self.limits.header_timeout)  # a connection that sends nothing, too

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)
        if self.connection is not None:
            self.connection.lost()

    def data_received(self, data: bytes) -> None:
        if self.head_too_large:
            return
        super().data_received(data)
        if self.transport.is_closing() or self.head_too_large:
            return
        if self.in_head:
            # Still inside the head after this read: the parser holds all of it (httptools
            # buffers a header until it is complete).
            self.head_read += len(data)
            if self.head_read > self.head_limit:
                self.reject_head()
            elif self.deadline is None:
                self.arm(self.limits.header_timeout)
        elif self.in_body and self.deadline is None:
            self.arm(self.limits.body_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_read = 0

    def on_headers_complete(self) -> None:
        self.in_head = False
        # The whole head may have come in one read: measure what the parser handed over.
        size = len(self.url) + sum(len(n) + len(v) + _HEADER_OVERHEAD for n, v in self.headers)
        if size > self.head_limit:
            self.head_too_large = True
            raise HeadTooLarge  # stops the parser; uvicorn answers via send_400_response
        self.disarm()
        self.in_body = True
        self.scope[CONNECTION_KEY] = self.connection  # type: ignore[literal-required]
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_body = False
        self.disarm()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to any parser error, including HeadTooLarge from a callback.
        if self.head_too_large:
            self.reject_head()
        else:
            super().send_400_response(msg)

    def reject_head(self) -> None:
        self.head_too_large = True
        self.reject(
            HeaderTooLargeError(
                f"Request line and headers are larger than the limit of {self.head_limit} bytes"
            )
        )

    def arm(self, seconds: float) -> None:
        self.disarm()
        self.deadline = self.loop.call_later(seconds, self.read_timed_out)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def read_timed_out(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        if self.in_body and self.cycle is not None:
            self.body_timed_out(self.cycle)
        elif self.in_head:
            self.head_timed_out(self.cycle)

    def body_timed_out(self, cycle: RequestResponseCycle) -> None:
        if self.pipeline:
            # A pipelined request waits for the one before it (reading is paused): the
            # wait is ours, not the client's.
            self.arm(self.limits.body_timeout)
            return
        if not cycle.response_started:
            if self.connection is not None:
                self.connection.body_timed_out = True  # the request's log line says 408
            timeout = self.limits.body_timeout
            self.reject(RequestTimeoutError(f"The request body did not arrive within {timeout} s"))
            return
        # Answered already (e.g. 413 from Content-Length): the rest of this body is not
        # waited for.
        cycle.keep_alive = False
        if cycle.response_complete:
            self.transport.close()

    def head_timed_out(self, cycle: RequestResponseCycle | None) -> None:
        if cycle is not None and not cycle.response_complete:
            # The next request's head trickles in while this answer is being sent: the
            # connection closes after it.
            cycle.keep_alive = False
        elif self.head_read:
            timeout = self.limits.header_timeout
            self.reject(RequestTimeoutError(f"The request head did not arrive within {timeout} s"))
        else:  # nothing sent at all: nothing to answer
            self.transport.close()

    def reject(self, error: GatewayError) -> None:
        """Answer ``error`` (OpenAI-format JSON) and close the connection; the request
        being read, if the app has it, sees its client gone."""
        body = orjson.dumps(error.to_dict())
        head = [STATUS_LINE[error.status_code]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # What connection_lost will do once the answer is out: nothing more is written
            # for this request, and the app stops waiting for its body now.
            cycle.disconnected = True
            cycle.message_event.set()
            if self.connection is not None:
                self.connection.lost()


def protocol_options(server: ServerConfig) -> dict[str, Any]:
    """uvicorn options for this config's HTTP protocol and its limits."""
    limits = HttpLimits(server.max_header_bytes, server.header_timeout, server.body_timeout)
    return {
        "http": functools.partial(BoundedHttpToolsProtocol, limits=limits),
        "h11_max_incomplete_event_size": server.max_header_bytes,
    }
