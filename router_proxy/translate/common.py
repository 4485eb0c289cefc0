"""What both directions share: JSON objects, SSE framing, and scrubbing secrets an
upstream may echo back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

Json = dict[str, Any]

DONE_EVENT = b"data: [DONE]\n\n"


def sse_event(payload: Json, event: str | None = None) -> bytes:
    """One SSE event; ``event`` names it (Anthropic's streams name every event)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove secrets an upstream may echo back (e.g. a key in an auth error)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def token_count(value: Any) -> int:
    """A usage count from JSON: an int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class SSEReader:
    """Splits SSE bytes into (event name, data) pairs; feed it a stream's pieces in order
    (a piece may hold several events, or end inside one)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, piece: bytes) -> list[tuple[str, bytes]]:
        text = (self._pending + piece).replace(b"\r\n", b"\n")
        *complete, self._pending = text.split(b"\n\n")
        return [event for raw in complete if (event := parse_event(raw)) is not None]

    def flush(self) -> list[tuple[str, bytes]]:
        rest, self._pending = self._pending, b""
        event = parse_event(rest)
        return [event] if event is not None else []


def parse_event(raw: bytes) -> tuple[str, bytes] | None:
    """(event name, data) of one SSE event (no blank line in ``raw``); None without data:
    multi-line data joined with newlines, comments and id:/retry: fields ignored."""
    event, data = "message", []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode("utf-8", "replace")
    return (event, b"\n".join(data)) if data else None
