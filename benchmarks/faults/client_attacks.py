"""Fault scenarios: misbehaving clients (issue 19, items 7-11).

Each runs a real gateway process (``python -m router_proxy serve``) and plays the
clients with raw sockets, on loopback, bounded in connections and time:

bad-input          every surface, on one keep-alive connection each: ``stream_options``
                   as a string, list or int, 300 levels of nesting in an unknown field
                   and in a content part; never a 5xx (nesting 400), and the next
                   request on the same connection answered 200
upload-disconnect  50 clients send half a body and leave: one access line each, status
                   499 ``client_disconnected``, no error lines, no tracebacks
abandoned-calls    12 clients leave calls to a model that never answers (its timeout
                   120 s) through a 10-connection pool: every upstream call is closed,
                   and the clients after them are answered at once
stalled-reader     5 clients read a stream's first bytes, then stop reading with their
                   connection open (the upstream streams without end, ``total: 3``):
                   each upstream call is closed soon after its total (logged stream_cut)
slowloris          40 connections trickle a head, 10 send half a body, 10 send nothing
                   (``header_timeout: 2``, ``body_timeout: 3``), a probe every 0.2 s:
                   every attacker gets 408 (or a close when it sent nothing) and every
                   probe 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway_process import GatewayProcess
from tests.support.probe_upstream import ProbeUpstream
from tests.support.upstream import FakeUpstream

Scenario = Callable[[argparse.Namespace, FakeUpstream, Path], dict[str, Any]]
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
# Each surface's path and a valid body, for a model behind an OpenAI-compatible upstream:
# the body is encoded again on its way there (the fake upstream serves chat and messages;
# completions and embeddings reach it too, and it answers them 404).
SURFACES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (CHAT, {"model": "echo", "messages": USER}),
    "responses": ("/v1/responses", {"model": "echo", "input": "hi"}),
    "messages": ("/v1/messages", {"model": "echo", "max_tokens": 8, "messages": USER}),
    "completions": ("/v1/completions", {"model": "echo", "prompt": "hi"}),
    "embeddings": ("/v1/embeddings", {"model": "echo", "input": "hi"}),
}
NEXT = json.dumps({"model": "echo", "messages": USER}).encode()  # after each attack
INPUT_POLICY = """\
providers:
  up: {type: openai, base_url: "UPSTREAM/v1"}
models:
  echo: {provider: up, upstream_model: echo}
decisions:
  - {name: default, when: true, route: {candidates: [echo]}}
"""
PROBE_POLICY = """\
server: {{header_timeout: {header}, body_timeout: {body}}}
providers:
  probe: {{type: openai, base_url: "{probe}/v1", max_connections: {pool}}}
models:
  echo: {{provider: probe}}
  hang: {{provider: probe, timeouts: {{total: 120}}}}
  firehose: {{provider: probe, timeouts: {{total: {total}}}}}
decisions:
  - {{name: default, when: true, route: {{candidates: [echo]}}}}
"""
POOL = 10
STREAM_TOTAL = 3.0
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
BOUND = 60.0  # no wait here is longer, whatever happens


def verdict(name: str, ok: bool, line: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {line}", flush=True)
    return ok


def nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels):
        value = [value]
    return value


def request_bytes(path: str, body: bytes, request_id: str = "", length: int | None = None) -> bytes:
    extra = f"x-request-id: {request_id}\r\n" if request_id else ""
    size = len(body) if length is None else length
    head = f"POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n{extra}"
    return (head + f"content-length: {size}\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One answer's status and body (content-length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    if headers.get("transfer-encoding") == "chunked":
        pieces = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            pieces.append((await reader.readexactly(size + 2))[:size])
            if size == 0:
                break
        body = b"".join(pieces)
    else:
        body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), body


async def read_to_close(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(-1)
    except ConnectionError:
        return b""


def access_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    out = gateway.output().splitlines()
    return [json.loads(line) for line in out if '"router_proxy.access"' in line]


def attacks(surface: str, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {
        f"stream_options={value!r}": body | {"stream": True, "stream_options": value}
        for value in ("x", [1], 5)
    }
    found["nested 300 (unknown field)"] = body | {"x_unknown": nested(300)}
    if surface in ("chat", "messages"):
        part = {"type": "text", "text": "hi", "y": nested(300)}
        found["nested 300 (content part)"] = body | {
            "messages": [{"role": "user", "content": [part]}]
        }
    if surface == "responses":
        part = {"type": "input_text", "text": "hi", "y": nested(300)}
        found["nested 300 (content part)"] = body | {"input": [{"role": "user", "content": [part]}]}
    return found


def bad_input(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    policy = INPUT_POLICY.replace("UPSTREAM", upstream.base_url)
    with GatewayProcess(policy, work, "bad-input") as gateway:
        rows = asyncio.run(_bad_input(gateway))
    server_errors = [r for r in rows if r["status"] >= 500]
    refused = [r for r in rows if 400 <= r["status"] < 500]
    lost = [r for r in rows if r["follow_up"] != 200]
    # Every nesting attack is refused; stream_options is the chat and completions APIs'
    # (the Responses and Messages surfaces translate their requests without it: 200).
    nesting = [r for r in rows if r["attack"].startswith("nested")]
    result = {
        "attacks": len(rows),
        "answered_4xx": len(refused),
        "answered_5xx": len(server_errors),
        "nesting_refused_400": sum(1 for r in nesting if r["status"] == 400),
        "follow_ups_answered_200": len(rows) - len(lost),
        "rows": rows,
    }
    result["pass"] = verdict(
        "bad-input",
        not server_errors
        and not lost
        and all(r["status"] for r in rows)
        and result["nesting_refused_400"] == len(nesting),
        f"{len(server_errors)} of {len(rows)} attacks on {len(SURFACES)} surfaces answered "
        f"5xx ({len(refused)} refused 4xx, {result['nesting_refused_400']}/{len(nesting)} "
        f"nesting attacks 400); {len(rows) - len(lost)}/{len(rows)} next requests on the same "
        f"connection answered 200",
    )
    return result


async def _bad_input(gateway: GatewayProcess) -> list[dict[str, Any]]:
    rows = []
    for surface, (path, body) in SURFACES.items():
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            for name, attack in attacks(surface, body).items():
                writer.write(request_bytes(path, json.dumps(attack).encode()))
                try:
                    status, _ = await asyncio.wait_for(read_answer(reader), BOUND)
                except (ConnectionError, asyncio.IncompleteReadError):
                    status = 0
                writer.write(request_bytes(CHAT, NEXT))
                try:
                    follow_up, _ = await asyncio.wait_for(read_answer(reader), BOUND)
                except (ConnectionError, asyncio.IncompleteReadError):
                    follow_up = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
                rows.append(
                    {"surface": surface, "attack": name, "status": status, "follow_up": follow_up}
                )
        finally:
            writer.close()
    return rows


def upload_disconnect(
    args: argparse.Namespace, upstream: FakeUpstream, work: Path
) -> dict[str, Any]:
    policy = INPUT_POLICY.replace("UPSTREAM", upstream.base_url)
    ids = [f"upload-{i}" for i in range(50)]
    with GatewayProcess(policy, work, "upload-disconnect") as gateway:
        asyncio.run(_leave_mid_upload(gateway, ids))
        probe = httpx.post(gateway.base_url + CHAT, content=NEXT, timeout=BOUND)
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            lines = [r for r in access_lines(gateway) if r["request_id"] in ids]
            if len(lines) >= len(ids):
                break
            time.sleep(0.1)
        time.sleep(0.5)  # any second line per request would be written by now
        lines = [r for r in access_lines(gateway) if r["request_id"] in ids]
        output = gateway.output()
    good = [r for r in lines if r["status"] == 499 and r["error"] == "client_disconnected"]
    errors = sum(1 for line in output.splitlines() if '"level":"error"' in line)
    result = {
        "clients": len(ids),
        "access_lines": len(lines),
        "lines_499_client_disconnected": len(good),
        "error_lines": errors,
        "tracebacks": output.count("Traceback"),
        "probe_status": probe.status_code,
    }
    result["pass"] = verdict(
        "upload-disconnect",
        len(lines) == len(good) == len(ids) and not errors and probe.status_code == 200,
        f"{len(good)}/{len(ids)} logged once as 499 client_disconnected ({len(lines)} lines), "
        f"{errors} error lines, {result['tracebacks']} tracebacks; probe {probe.status_code}",
    )
    return result


async def _leave_mid_upload(gateway: GatewayProcess, ids: list[str]) -> None:
    async def one(request_id: str) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(request_bytes(CHAT, b'{"model": "echo", "mess', request_id, 4000))
        await writer.drain()
        await asyncio.sleep(0.3)  # the gateway is reading the body now
        writer.close()

    await asyncio.gather(*(one(request_id) for request_id in ids))


def _probe_gateway(probe: ProbeUpstream, work: Path, name: str) -> GatewayProcess:
    policy = PROBE_POLICY.format(
        header=HEADER_TIMEOUT,
        body=BODY_TIMEOUT,
        probe=probe.base_url,
        pool=POOL,
        total=STREAM_TOTAL,
    )
    return GatewayProcess(policy, work, name)


def abandoned_calls(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    with ProbeUpstream() as probe, _probe_gateway(probe, work, "abandoned-calls") as gateway:
        began = time.perf_counter()
        asyncio.run(_abandon(gateway, probe, 12))
        left = time.perf_counter()
        all_closed = probe.wait_closed("hang", POOL, BOUND)
        closed_after = time.perf_counter() - left
        seconds, statuses = [], []
        for _ in range(5):
            start = time.perf_counter()
            try:
                answer = httpx.post(gateway.base_url + CHAT, content=NEXT, timeout=BOUND)
                statuses.append(answer.status_code)
            except httpx.TimeoutException:
                statuses.append(0)  # still waiting for a connection of the pool
            seconds.append(time.perf_counter() - start)
        lines = [r for r in access_lines(gateway) if r["request_id"].startswith("abandon-")]
    result = {
        "abandoned": 12,
        "pool": POOL,
        "upstream_calls_started": probe.started["hang"],
        "upstream_calls_closed_by_gateway": probe.closed["hang"],
        "closed_within_s": round(closed_after, 2),
        "setup_s": round(left - began, 2),
        "next_requests": statuses,
        "next_slowest_s": round(max(seconds), 3),
        "lines_499": sum(1 for r in lines if r["status"] == 499),
    }
    result["pass"] = verdict(
        "abandoned-calls",
        all_closed and statuses == [200] * 5 and max(seconds) < 5 and result["lines_499"] == 12,
        f"{probe.closed['hang']}/{probe.started['hang']} upstream calls closed "
        f"{closed_after:.2f} s after their clients left (timeout 120 s); the next 5 requests "
        f"{statuses}, slowest {max(seconds):.3f} s; {result['lines_499']}/12 logged 499",
    )
    return result


async def _abandon(gateway: GatewayProcess, probe: ProbeUpstream, count: int) -> None:
    writers = []
    body = json.dumps({"model": "hang", "messages": USER}).encode()
    for i in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(request_bytes(CHAT, body, f"abandon-{i}"))
        writers.append(writer)
    await asyncio.to_thread(probe.wait_in_progress, "hang", POOL, BOUND)
    for writer in writers:
        writer.close()


def stalled_reader(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    with ProbeUpstream() as probe, _probe_gateway(probe, work, "stalled-reader") as gateway:
        held = asyncio.run(_stall(gateway, probe, 5))
        lines = [r for r in access_lines(gateway) if r["request_id"].startswith("stall-")]
    # Cut when a send waited on its client past the total; on a machine too busy to fill
    # the buffers by then, ended by the upstream's own total timeout instead.
    errors = Counter(str(r["error"]) for r in lines)
    ended = errors["stream_cut"] + errors["upstream_timeout"]
    result = {
        "clients": 5,
        "model_total_s": STREAM_TOTAL,
        "upstream_calls_closed_while_held": len(held),
        "upstream_held_s": [round(s, 2) for s in held],
        "logged_errors": dict(errors),
    }
    ok = len(held) == 5 and max(held, default=BOUND) < STREAM_TOTAL + 10 and ended == 5
    result["pass"] = verdict(
        "stalled-reader",
        ok,
        f"{len(held)}/5 upstream calls closed while their clients held the connection "
        f"without reading, {min(held, default=0):.1f}-{max(held, default=0):.1f} s after the "
        f"request (total {STREAM_TOTAL} s); logged {dict(errors)}",
    )
    return result


async def _stall(gateway: GatewayProcess, probe: ProbeUpstream, count: int) -> list[float]:
    body = json.dumps({"model": "firehose", "stream": True, "messages": USER}).encode()
    began = time.perf_counter()
    writers = []
    for i in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        sock.connect(("127.0.0.1", gateway.port))
        _, writer = await asyncio.open_connection(sock=sock)
        writer.transport.pause_reading()  # read nothing at all: the buffers fill
        writer.write(request_bytes(CHAT, body, f"stall-{i}"))
        writers.append(writer)
    held = []
    deadline = time.monotonic() + BOUND
    while len(held) < count and time.monotonic() < deadline:
        held += [time.perf_counter() - began] * (probe.closed["firehose"] - len(held))
        await asyncio.sleep(0.05)
    for writer in writers:
        writer.close()
    return held


def slowloris(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    with ProbeUpstream() as probe, _probe_gateway(probe, work, "slowloris") as gateway:
        found = asyncio.run(_slowloris(gateway))
    heads, bodies, idle, probes = (found[k] for k in ("heads", "bodies", "idle", "probes"))
    result = {
        "header_timeout_s": HEADER_TIMEOUT,
        "body_timeout_s": BODY_TIMEOUT,
        "slow_heads_408": sum(1 for status, _ in heads if status == 408),
        "slow_heads_closed_max_s": round(max(s for _, s in heads), 2),
        "short_bodies_408": sum(1 for status, _ in bodies if status == 408),
        "short_bodies_closed_max_s": round(max(s for _, s in bodies), 2),
        "idle_closed": sum(1 for status, _ in idle if status == 0),
        "idle_closed_max_s": round(max(s for _, s in idle), 2),
        "probes": len(probes),
        "probes_200": sum(1 for status, _ in probes if status == 200),
        "probe_max_s": round(max(s for _, s in probes), 3),
    }
    ok = (
        result["slow_heads_408"] == len(heads)
        and result["short_bodies_408"] == len(bodies)
        and result["idle_closed"] == len(idle)
        and result["probes_200"] == len(probes)
    )
    result["pass"] = verdict(
        "slowloris",
        ok,
        f"{result['slow_heads_408']}/{len(heads)} slow heads 408 (closed by "
        f"{result['slow_heads_closed_max_s']} s, timeout {HEADER_TIMEOUT}), "
        f"{result['short_bodies_408']}/{len(bodies)} short bodies 408 (by "
        f"{result['short_bodies_closed_max_s']} s, timeout {BODY_TIMEOUT}), "
        f"{result['idle_closed']}/{len(idle)} idle closed; {result['probes_200']}/"
        f"{len(probes)} probes 200 meanwhile (slowest {result['probe_max_s']} s)",
    )
    return result


async def _slowloris(gateway: GatewayProcess) -> dict[str, list[tuple[int, float]]]:
    began = time.perf_counter()
    stop = asyncio.Event()

    async def attacker(first: bytes, trickle: bytes | None) -> tuple[int, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        if first:
            writer.write(first)
        reply = asyncio.ensure_future(read_to_close(reader))
        while trickle and not reply.done() and time.perf_counter() - began < BOUND:
            writer.write(trickle)
            await asyncio.wait([reply], timeout=0.5)
        try:
            data = await asyncio.wait_for(reply, max(0.1, BOUND - (time.perf_counter() - began)))
        except TimeoutError:
            data = b"still open"
        writer.close()
        status = int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else 0
        if data == b"still open":
            status = -1
        return status, time.perf_counter() - began

    async def prober() -> list[tuple[int, float]]:
        found = []
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=BOUND) as client:
            while not stop.is_set():
                start = time.perf_counter()
                answer = await client.post(CHAT, json={"model": "echo", "messages": USER})
                found.append((answer.status_code, time.perf_counter() - start))
                await asyncio.sleep(0.2)
        return found

    probes = asyncio.ensure_future(prober())
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
    heads = [attacker(head, b"x") for _ in range(40)]
    bodies = [attacker(request_bytes(CHAT, b'{"model"', length=500), None) for _ in range(10)]
    idle = [attacker(b"", None) for _ in range(10)]
    done = await asyncio.gather(*heads, *bodies, *idle)
    stop.set()
    return {
        "heads": done[:40],
        "bodies": done[40:50],
        "idle": done[50:],
        "probes": await probes,
    }


SCENARIOS: dict[str, Scenario] = {
    "bad-input": bad_input,
    "upload-disconnect": upload_disconnect,
    "abandoned-calls": abandoned_calls,
    "stalled-reader": stalled_reader,
    "slowloris": slowloris,
}
