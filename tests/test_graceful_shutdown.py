"""SIGTERM, as a container runtime sends it: the gateway is a real process, its
upstream a real HTTP server whose streams take seconds (``slow-stream``: one piece every
0.2 s) and whose plain answers take 0.5 s (``slow``)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.gateway_process import GatewayProcess
from tests.support.upstream import SLOW_STREAM_GAP, FakeUpstream

POLICY = """\
server: {{shutdown_grace: {grace}, drain_delay: {drain}}}
providers:
  up: {{type: openai, base_url: "{upstream}/v1"}}
models:
  streamer: {{provider: up, upstream_model: slow-stream}}
  thinker: {{provider: up, upstream_model: slow}}
decisions:
  - {{name: default, when: true, route: {{candidates: [thinker]}}}}
"""


def start(
    upstream: FakeUpstream, tmp_path: Path, grace: float, drain: float = 0.0
) -> GatewayProcess:
    policy = POLICY.format(grace=grace, drain=drain, upstream=upstream.base_url)
    gateway = GatewayProcess(policy, tmp_path)
    gateway.start()
    return gateway


def received(upstream: FakeUpstream, marker: str) -> int:
    """How many requests carrying ``marker`` the upstream has seen."""
    return sum(1 for _, _, body in list(upstream.requests) if marker in json.dumps(body))


async def wait_for(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.01)


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


def stream_text(body: str) -> tuple[str, bool]:
    """The streamed content and whether it ended with ``data: [DONE]``."""
    pieces, done = [], False
    for line in body.splitlines():
        if line == "data: [DONE]":
            done = True
        elif line.startswith("data: "):
            for choice in json.loads(line.removeprefix("data: "))["choices"]:
                pieces.append(choice["delta"].get("content") or "")
    return "".join(pieces), done


def chat_body(model: str, words: str, stream: bool) -> dict[str, object]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": words}]}


async def streamed(client: httpx.AsyncClient, url: str, words: str) -> tuple[int, str]:
    async with client.stream("POST", url, json=chat_body("streamer", words, True)) as answer:
        return answer.status_code, (await answer.aread()).decode()


async def plain(client: httpx.AsyncClient, url: str, words: str) -> tuple[int, str]:
    answer = await client.post(url, json=chat_body("auto", words, False))
    return answer.status_code, answer.text


def test_sigterm_lets_requests_and_streams_in_flight_finish(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    gateway = start(upstream, tmp_path, grace=20)
    url = gateway.base_url + "/v1/chat/completions"
    marker = f"drain-{uuid.uuid4().hex[:8]}"
    words = f"{marker} one two three four five six"  # 8 pieces: about 1.6 s a stream

    async def scenario() -> tuple[list[tuple[int, str]], list[tuple[int, str]], float]:
        async with httpx.AsyncClient(timeout=30) as client:
            streams = [asyncio.create_task(streamed(client, url, words)) for _ in range(4)]
            plains = [asyncio.create_task(plain(client, url, words)) for _ in range(3)]
            await wait_for(lambda: received(upstream, marker) == 7, "all 7 reach the upstream")
            gateway.terminate()
            signalled = time.monotonic()
            # The listener closes at once; the requests in flight go on meanwhile.
            await wait_for(lambda: refuses_connections(gateway.port), "refusing", within=3)
            refused_after = time.monotonic() - signalled
            assert not all(task.done() for task in streams), "streams still draining"
            return (
                list(await asyncio.gather(*streams)),
                list(await asyncio.gather(*plains)),
                refused_after,
            )

    try:
        streams, plains, refused_after = asyncio.run(scenario())
        assert gateway.wait(timeout=15) == 0
    finally:
        gateway.stop()
    assert refused_after < 1.0
    for status, body in streams:
        assert status == 200
        assert stream_text(body) == ("echo: " + words, True)
    for status, body in plains:
        assert status == 200
        assert json.loads(body)["choices"][0]["message"]["content"] == "echo: " + words


def test_a_stream_outlasting_the_grace_period_is_cut_and_the_process_exits(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    grace = 1.0
    gateway = start(upstream, tmp_path, grace=grace)
    url = gateway.base_url + "/v1/chat/completions"
    words = " ".join(["word"] * 40)  # about 8 s of stream

    async def scenario() -> tuple[str, bool]:
        body, signalled = "", False
        async with httpx.AsyncClient(timeout=30) as client:
            request = chat_body("streamer", words, True)
            async with client.stream("POST", url, json=request) as answer:
                assert answer.status_code == 200
                try:
                    async for text in answer.aiter_text():
                        body += text
                        if "word" in body and not signalled:  # mid-stream: SIGTERM
                            gateway.terminate()
                            signalled = True
                except httpx.RemoteProtocolError:
                    pass  # the connection closed mid-body: what a cut looks like
        return body, signalled

    try:
        began = time.monotonic()
        body, signalled = asyncio.run(scenario())
        code = gateway.wait(timeout=grace + 10)
        took = time.monotonic() - began
    finally:
        gateway.stop()
    assert signalled
    assert code == 0
    content, done = stream_text(body)
    assert not done, "the stream was cut, not finished"
    assert content.count("word") < 40 - int(grace / SLOW_STREAM_GAP)
    assert took < grace + 5
    output = gateway.output()
    assert "timeout graceful shutdown exceeded" in output
    # The request's log line says the answer was cut, not that it completed cleanly.
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert [r["error"] for r in requests] == ["stream_cut"]


def test_drain_delay_keeps_serving_with_ready_failing_then_shuts_down(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    delay = 2.0
    gateway = start(upstream, tmp_path, grace=5, drain=delay)
    url = gateway.base_url + "/v1/chat/completions"

    async def scenario() -> tuple[list[int], list[int], float]:
        ready, served = [], []
        gateway.terminate()
        signalled = time.monotonic()
        # Each request on a fresh connection, as a balancer's new requests would come.
        while time.monotonic() - signalled < delay - 0.5:
            async with httpx.AsyncClient(timeout=10) as client:
                ready.append((await client.get(gateway.base_url + "/ready")).status_code)
                served.append((await plain(client, url, "still here"))[0])
        await wait_for(lambda: refuses_connections(gateway.port), "refusing", within=delay + 3)
        return ready, served, time.monotonic() - signalled

    try:
        ready, served, refused_after = asyncio.run(scenario())
        assert gateway.wait(timeout=15) == 0
    finally:
        gateway.stop()
    assert ready, "no request in the delay"
    assert set(ready) == {503}, ready  # out of the balancer from the signal on
    assert set(served) == {200}, served  # while still answering what comes
    assert refused_after >= delay - 0.1  # accepting until the delay is over
    assert "SIGTERM: draining" in gateway.output()


def test_a_second_sigterm_skips_the_drain_delay(upstream: FakeUpstream, tmp_path: Path) -> None:
    gateway = start(upstream, tmp_path, grace=5, drain=30)
    try:
        gateway.terminate()
        deadline = time.monotonic() + 5
        while httpx.get(gateway.base_url + "/ready", timeout=2).status_code != 503:
            assert time.monotonic() < deadline, "never draining"
            time.sleep(0.05)
        began = time.monotonic()
        gateway.terminate()
        assert gateway.wait(timeout=10) == 0
        assert time.monotonic() - began < 5  # not the 30 s delay
    finally:
        gateway.stop()
