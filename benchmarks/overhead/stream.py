"""Streaming: a small aiohttp client measuring SSE streams through each target.

The upstream streams every chat completion as K chunks ``--chunk-gap-ms`` apart, then a
usage chunk and ``data: [DONE]``; each content chunk carries the CLOCK_MONOTONIC time the
upstream wrote it. For each stream the client records the time to the first SSE event
(TTFB, from just before the request is sent), each later event's arrival relative to the
first, each chunk's relay time (its arrival here minus its stamp), the total time, and the
server's CPU per stream. Per round, each target in turn gets ``requests`` streams one
after the other on one keep-alive connection; then each target gets ``connections``
concurrent streaming clients for ``duration`` seconds (streams/s).

wrk cannot do this: it reports a whole response's latency, not when each chunk arrived.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks.overhead.procs import BenchError, Server, tree_cpu_seconds
from benchmarks.overhead.surfaces import CHAT, PROMPT

STREAM_TIMEOUT_S = 30.0
DONE = b"data: [DONE]"
# The upstream's emission stamp in each content chunk (see upstream.py).
_STAMP_RE = re.compile(rb'"content":\s*"t(\d+) ')

Body = Callable[[int], bytes]  # request number -> body


def stream_bodies(vary: bool) -> Body:
    """The chat surface's body, streamed with usage; with ``vary`` a unique prompt each."""
    template = json.loads(CHAT.body) | {"stream": True, "stream_options": {"include_usage": True}}
    fixed = json.dumps(template, separators=(",", ":")).encode()
    if not vary:
        return lambda n: fixed
    head, tail = fixed.split(PROMPT.encode(), 1)
    return lambda n: head + PROMPT.encode() + f" #{n}".encode() + tail


@dataclass
class Stream:
    ttfb_ms: float
    total_ms: float
    offsets_ms: list[float]  # each event after the first, from the first's arrival
    relay_us: list[float]  # each stamped chunk: its arrival here - its write upstream


@dataclass
class Batch:
    target: str
    round: int
    connections: int
    streams: list[Stream] = field(default_factory=list)
    completed: int = 0
    seconds: float = 0.0
    cpu_seconds: float | None = None  # the server's, over the batch

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "target": self.target,
            "round": self.round,
            "connections": self.connections,
            "completed": self.completed,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
        }
        if self.streams:
            out["ttfb_ms"] = [s.ttfb_ms for s in self.streams]
            out["total_ms"] = [s.total_ms for s in self.streams]
        return out


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes) -> Stream:
    try:
        return await _one_stream(session, url, body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"stream from {url} failed: {exc!r}") from exc


async def _one_stream(session: aiohttp.ClientSession, url: str, body: bytes) -> Stream:
    headers = {"content-type": "application/json"}
    # CLOCK_MONOTONIC, the upstream's stamp clock too (system-wide on Linux).
    start = time.monotonic_ns()
    arrivals: list[int] = []
    relay: list[float] = []
    buffer = b""
    last = b""
    async with session.post(url, data=body, headers=headers) as answer:
        if answer.status != 200:
            raise BenchError(f"POST {url} -> {answer.status}: {(await answer.read())[:300]!r}")
        async for chunk in answer.content.iter_any():
            now = time.monotonic_ns()
            buffer += chunk
            while (end := buffer.find(b"\n\n")) >= 0:
                last, buffer = buffer[:end], buffer[end + 2 :]
                arrivals.append(now)
                if stamp := _STAMP_RE.search(last):
                    relay.append((now - int(stamp[1])) / 1e3)
    finished = time.monotonic_ns()
    if last.strip() != DONE:
        raise BenchError(f"stream from {url} did not end with data: [DONE] (last {last[:200]!r})")
    first = arrivals[0]
    return Stream(
        ttfb_ms=(first - start) / 1e6,
        total_ms=(finished - start) / 1e6,
        offsets_ms=[(t - first) / 1e6 for t in arrivals[1:]],
        relay_us=relay,
    )


def _session(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=STREAM_TIMEOUT_S)
    )


def _cpu_since(server: Server, before: float | None) -> float | None:
    after = tree_cpu_seconds(server.pid)
    return None if before is None or after is None else after - before


def cpu_us_per_stream(batches: list[Batch]) -> float | None:
    """Summed over the batches: /proc counts CPU in 10 ms ticks, too coarse for one batch
    of a few streams."""
    cpu = [b.cpu_seconds for b in batches]
    streams = sum(b.completed for b in batches)
    if not streams or any(c is None for c in cpu):
        return None
    return sum(c for c in cpu if c is not None) / streams * 1e6


async def sequential(
    server: Server, name: str, round_no: int, requests: int, body: Body, ids: Iterator[int]
) -> Batch:
    """``requests`` streams one after the other on one keep-alive connection."""
    batch = Batch(name, round_no, 1)
    url = server.base + CHAT.path
    async with _session(1) as session:
        await one_stream(session, url, body(-1))  # opens the connection, unmeasured
        cpu = tree_cpu_seconds(server.pid)
        start = time.perf_counter()
        for _ in range(requests):
            batch.streams.append(await one_stream(session, url, body(next(ids))))
        batch.seconds = time.perf_counter() - start
    batch.completed = len(batch.streams)
    batch.cpu_seconds = _cpu_since(server, cpu)
    server.check_alive("during the run")
    return batch


async def concurrent(
    server: Server,
    name: str,
    round_no: int,
    connections: int,
    duration: float,
    body: Body,
    ids: Iterator[int],
) -> Batch:
    """``connections`` clients streaming back to back for ``duration`` seconds."""
    batch = Batch(name, round_no, connections)
    url = server.base + CHAT.path
    async with _session(connections) as session:
        cpu = tree_cpu_seconds(server.pid)
        start = time.perf_counter()
        deadline = start + duration

        async def client() -> int:
            done = 0
            while time.perf_counter() < deadline:
                await one_stream(session, url, body(next(ids)))
                done += 1
            return done

        batch.completed = sum(await asyncio.gather(*(client() for _ in range(connections))))
        batch.seconds = time.perf_counter() - start
    batch.cpu_seconds = _cpu_since(server, cpu)
    server.check_alive("during the run")
    return batch


def _index_medians(batches: list[Batch], target: str, series: str) -> list[float]:
    """Per index of a per-stream series, the median over the target's streams, up to the
    shortest stream's length."""
    values: list[list[float]] = [
        getattr(s, series) for b in batches if b.target == target for s in b.streams
    ]
    length = min(len(v) for v in values)
    return [statistics.median(v[i] for v in values) for i in range(length)]


def summarize(batches: list[Batch], target: str) -> dict[str, float]:
    seq = [b for b in batches if b.target == target and b.connections == 1]
    streams = [s for b in seq for s in b.streams]
    ttfb = sorted(s.ttfb_ms for s in streams)
    out = {
        "ttfb_ms": statistics.median(ttfb),
        "ttfb_p90_ms": ttfb[int(0.9 * (len(ttfb) - 1))],
        "total_ms": statistics.median(s.total_ms for s in streams),
    }
    if relay := _index_medians(seq, target, "relay_us"):
        out["first_chunk_relay_us"] = relay[0]
        if len(relay) > 1:
            out["chunk_relay_us"] = statistics.median(relay[1:])
    if (cpu := cpu_us_per_stream(seq)) is not None:
        out["cpu_us_per_stream"] = cpu
    conc = [b for b in batches if b.target == target and b.connections > 1]
    if conc:
        out["streams_per_s"] = statistics.median(b.completed / b.seconds for b in conc)
        if (cpu := cpu_us_per_stream(conc)) is not None:
            out["cpu_us_per_stream_concurrent"] = cpu
    return out


def _diffs(batches: list[Batch], target: str, series: str) -> list[float]:
    mine, floor = _index_medians(batches, target, series), _index_medians(batches, "floor", series)
    return [m - f for m, f in zip(mine, floor, strict=False)]


@dataclass
class Added:
    """What a target adds to each chunk after the first, against the floor (us)."""

    stamped: float | None  # p50 over chunks of (target's relay - floor's relay)
    offsets: float  # p50 over events of (target's offset - floor's offset)
    stamped_per_chunk: list[float]
    offsets_per_event: list[float]

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def added_latency(batches: list[Batch], target: str) -> Added:
    """Two estimates of the latency a target adds to each chunk after the first.

    ``stamped`` compares each chunk's relay time (upstream write to client read), so it
    sees each chunk alone. ``offsets`` compares each event's arrival after the first
    event; it also moves with the first event's own delay (a late first event shortens
    every later offset), so it is noisier. None when the target's chunks lost the stamps.
    """
    seq = [b for b in batches if b.connections == 1]
    stamped = _diffs(seq, target, "relay_us")[1:]  # the first chunk's is TTFB's business
    offsets = [d * 1e3 for d in _diffs(seq, target, "offsets_ms")]
    return Added(
        stamped=statistics.median(stamped) if stamped else None,
        offsets=statistics.median(offsets),
        stamped_per_chunk=stamped,
        offsets_per_event=offsets,
    )
