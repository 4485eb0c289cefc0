"""Reading the access log line of a request from pytest's caplog. The line is written
once the answer has gone (a whole answer: just after its last byte; a stream: at its
end), so the client may see the answer first: wait a little for it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from router_proxy.observability.logging import ACCESS_LOGGER


def log_line(
    caplog: pytest.LogCaptureFixture, request_id: str | None = None, every: float = 0.02
) -> dict[str, Any]:
    """The line of ``request_id`` (any request's last line when None), looked for
    ``every`` seconds."""
    deadline = time.monotonic() + 5
    while True:
        for record in reversed(caplog.records):
            fields = record.__dict__.get("fields", {})
            if record.name == ACCESS_LOGGER and request_id in (None, fields.get("request_id")):
                return dict(fields)
        assert time.monotonic() < deadline, f"no log line for {request_id or 'any request'}"
        time.sleep(every)
