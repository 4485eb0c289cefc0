"""JsonAnswer: a whole JSON answer, sent as two ASGI messages, then ``after`` runs.

Starlette's ``Response`` re-checks and re-encodes every header and wraps the after-work
in a ``BackgroundTask``; on the surfaces' hot path (benchmarks/overhead) that was a
measurable share of the gateway's own cost. The headers here are the gateway's own
(``x-router-*`` and the surface's), so one pass encodes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_JSON = (b"content-type", b"application/json")


class JsonAnswer(Response):
    media_type = "application/json"

    def __init__(
        self,
        body: bytes,
        headers: Mapping[str, str],
        after: Callable[[], None] | None = None,
        status_code: int = 200,
    ) -> None:
        self.body = body
        self.status_code = status_code
        self.background = None
        self.after = after  # runs once the answer has been handed to the server
        raw = [(b"content-length", str(len(body)).encode()), _JSON]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})
        if self.after is not None:
            self.after()
