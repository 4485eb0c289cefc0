"""The HTTP/1.1 protocol the gateway is served with: uvicorn's httptools protocol with a
bound on the request head (request line and headers).

httptools itself reads headers of any size into memory, and uvicorn's only header limit
(``h11_max_incomplete_event_size``) applies to its h11 parser alone. This protocol applies
that same setting (``server.max_header_bytes``) to httptools: a request whose head grows
past it is answered 431 with an OpenAI-format error and its connection closed, before the
app sees it and after at most one more read (64 KiB) than the limit is buffered.

The limit travels in uvicorn's own config rather than in a closure because worker
processes receive the protocol class by reference (pickled) and the config by value.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from router_proxy.config.schema import ServerConfig
from router_proxy.errors import HeaderTooLargeError

DEFAULT_HEAD_LIMIT = 16 * 1024
_HEADER_OVERHEAD = 4  # ": " and CRLF around each parsed header


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing (httptools re-raises it wrapped)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.head_limit = config.h11_max_incomplete_event_size or DEFAULT_HEAD_LIMIT
        self.in_head = True  # reading a request head (the connection starts with one)
        self.head_read = 0  # bytes read while the head was incomplete
        self.head_too_large = False

    def data_received(self, data: bytes) -> None:
        if self.head_too_large:
            return
        super().data_received(data)
        # Still inside the head after this read: the parser holds all of it (httptools
        # buffers a header until it is complete).
        if self.in_head and not self.head_too_large and not self.transport.is_closing():
            self.head_read += len(data)
            if self.head_read > self.head_limit:
                self.reject_head()

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
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to any parser error, including HeadTooLarge from a callback.
        if self.head_too_large:
            self.reject_head()
        else:
            super().send_400_response(msg)

    def reject_head(self) -> None:
        self.head_too_large = True
        error = HeaderTooLargeError(
            f"Request line and headers are larger than the limit of {self.head_limit} bytes"
        )
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


def protocol_options(server: ServerConfig) -> dict[str, Any]:
    """uvicorn options for this config's HTTP protocol and its limits."""
    return {
        "http": BoundedHttpToolsProtocol,
        "h11_max_incomplete_event_size": server.max_header_bytes,
    }
