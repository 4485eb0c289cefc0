"""The load side of the fault benchmarks: many chat requests over loopback with a bounded
number in flight (an ``asyncio.Semaphore``), each classified by what the client got."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

CHAT_PATH = "/v1/chat/completions"


@dataclass
class Outcome:
    request_id: str
    stream: bool
    started: float  # time.perf_counter() when sent
    seconds: float = 0.0
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    # None: an HTTP answer came; else why not ("refused": the connection was never
    # accepted; "reset": closed before any answer; "cut": closed mid-answer).
    failure: str | None = None
    exception: str | None = None  # the httpx exception's name, when there was one

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def complete(self) -> bool:
        """A 200 whose body is whole: valid JSON, or a stream that ended with [DONE]."""
        if self.status != 200 or self.failure is not None:
            return False
        if self.stream:
            return self.body.rstrip().endswith("data: [DONE]") and '"error"' not in self.body
        try:
            return bool(self.json()["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            return False


def chat_body(model: str, prompt: str, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]}


async def send(
    client: httpx.AsyncClient, base_url: str, body: dict[str, Any], request_id: str | None = None
) -> Outcome:
    """One request; transport failures become an Outcome, never an exception."""
    request_id = request_id or uuid.uuid4().hex
    stream = body.get("stream") is True
    began = time.perf_counter()
    outcome = Outcome(request_id, stream, began)
    try:
        headers = {"x-request-id": request_id}
        async with client.stream("POST", base_url + CHAT_PATH, json=body, headers=headers) as r:
            outcome.status, outcome.headers = r.status_code, dict(r.headers)
            chunks = []
            try:
                async for chunk in r.aiter_bytes():
                    chunks.append(chunk)
            except httpx.TransportError as exc:
                outcome.failure, outcome.exception = "cut", type(exc).__name__
            outcome.body = b"".join(chunks).decode(errors="replace")
    except httpx.ConnectError as exc:
        outcome.failure, outcome.exception = "refused", type(exc).__name__
    except httpx.TransportError as exc:
        outcome.failure, outcome.exception = "reset", type(exc).__name__
    outcome.seconds = time.perf_counter() - began
    return outcome


class Progress:
    """Prints a line every ``every`` completions (and at the end)."""

    def __init__(self, label: str, total: int, every: int) -> None:
        self.label, self.total, self.every = label, total, max(1, every)
        self.done = 0
        self.began = time.perf_counter()

    def tick(self) -> None:
        self.done += 1
        if self.done % self.every == 0 or self.done == self.total:
            took = time.perf_counter() - self.began
            print(f"  [{self.label}] {self.done}/{self.total} in {took:.1f} s", flush=True)


async def fire(
    bodies: Sequence[tuple[str, dict[str, Any]]],
    concurrency: int,
    label: str,
    client_timeout: float = 60.0,
) -> list[Outcome]:
    """Send every (base_url, body) with at most ``concurrency`` in flight."""
    gate = asyncio.Semaphore(concurrency)
    progress = Progress(label, len(bodies), len(bodies) // 4)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=client_timeout, limits=limits) as client:

        async def one(base_url: str, body: dict[str, Any]) -> Outcome:
            async with gate:
                outcome = await send(client, base_url, body)
            progress.tick()
            return outcome

        return list(await asyncio.gather(*(one(url, body) for url, body in bodies)))


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def count(outcomes: Sequence[Outcome], key: Callable[[Outcome], object]) -> dict[str, int]:
    found: dict[str, int] = {}
    for outcome in outcomes:
        name = str(key(outcome))
        found[name] = found.get(name, 0) + 1
    return dict(sorted(found.items()))
