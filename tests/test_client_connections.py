"""Clients that leave, stall or trickle (issue 19, items 9-11), against a real
``router-proxy serve`` process and an upstream that tells when the gateway lets go of a
call (tests/support/probe_upstream.py). Raw sockets play the misbehaving clients.

No timing is asserted: each test waits for an outcome (a 408, a closed upstream call, an
answered probe) with bounds far above the configured timeouts, so a loaded machine only
makes them slower.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from router_proxy.config.schema import ServerConfig
from tests.support.gateway_process import GatewayProcess
from tests.support.probe_upstream import ProbeUpstream

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
STREAM_TOTAL = 2.0
POOL = 2  # the provider's connections: abandoned calls that held them would block others
POLICY = """\
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
CHAT = "/v1/chat/completions"
BOUND = 30.0  # seconds: far above every timeout here; only a failure waits this long


@pytest.fixture(scope="module")
def probe() -> Iterator[ProbeUpstream]:
    with ProbeUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(
    probe: ProbeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    policy = POLICY.format(
        header=HEADER_TIMEOUT,
        body=BODY_TIMEOUT,
        probe=probe.base_url,
        pool=POOL,
        total=STREAM_TOTAL,
    )
    with GatewayProcess(policy, tmp_path_factory.mktemp("client-connections")) as process:
        yield process


def body_of(model: str, *, stream: bool = False) -> bytes:
    messages = [{"role": "user", "content": "hi"}]
    return json.dumps({"model": model, "stream": stream, "messages": messages}).encode()


def head(length: int, request_id: str = "") -> bytes:
    extra = f"x-request-id: {request_id}\r\n" if request_id else ""
    return (
        f"POST {CHAT} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n{extra}"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def connect(gateway: GatewayProcess, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:  # before connecting: it sets the advertised window
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(BOUND)
    sock.connect(("127.0.0.1", gateway.port))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def access_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in gateway.output().splitlines()
        if '"router_proxy.access"' in line
    ]


def lines_of(gateway: GatewayProcess, request_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The access lines of ``request_id``, once ``count`` of them are written."""
    deadline = time.monotonic() + BOUND
    while True:
        found = [row for row in access_lines(gateway) if row["request_id"] == request_id]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def probe_answered(gateway: GatewayProcess) -> None:
    response = httpx.post(gateway.base_url + CHAT, content=body_of("echo"), timeout=BOUND)
    assert response.status_code == 200, response.text


def assert_408(reply: bytes, what: str) -> None:
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408 "), reply[:300]
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers
    error = json.loads(payload)["error"]
    assert error["code"] == "request_timeout"
    assert what in error["message"]


def test_a_client_leaving_mid_upload_is_one_499_line_without_traceback(
    gateway: GatewayProcess,
) -> None:
    before = len(gateway.output())
    ids = [f"upload-gone-{i}" for i in range(5)]
    for request_id in ids:
        with connect(gateway) as sock:
            sock.sendall(head(1000, request_id) + b'{"model": "echo", "mess')
            time.sleep(0.2)  # the gateway is reading the body now
    for request_id in ids:
        (line,) = lines_of(gateway, request_id)
        assert line["status"] == 499
        assert line["error"] == "client_disconnected"
    probe_answered(gateway)
    logged = gateway.output()[before:]
    assert '"level":"error"' not in logged
    assert "Traceback" not in logged
    assert all(len(lines_of(gateway, request_id)) == 1 for request_id in ids)


def test_a_client_leaving_a_call_closes_the_upstream_call(
    gateway: GatewayProcess, probe: ProbeUpstream
) -> None:
    """More abandoned calls than the provider has connections: each is closed upstream
    at once, so the next client is served instead of waiting for their timeout (120 s)."""
    closed_before = probe.closed["hang"]
    ids = [f"call-gone-{i}" for i in range(2 * POOL)]
    socks = [connect(gateway) for _ in ids]
    for sock, request_id in zip(socks, ids, strict=True):
        body = body_of("hang")
        sock.sendall(head(len(body), request_id) + body)
    assert probe.wait_in_progress("hang", POOL, BOUND)
    assert probe.in_progress("hang") == POOL  # the pool is full; the rest wait for it
    for sock in socks:
        sock.close()
    assert probe.wait_closed("hang", closed_before + POOL, BOUND)
    probe_answered(gateway)
    for request_id in ids:
        (line,) = lines_of(gateway, request_id)
        assert line["status"] == 499
        assert line["error"] == "client_disconnected"
    assert probe.in_progress("hang") == 0


def test_a_client_that_stops_reading_a_stream_does_not_hold_its_upstream_call(
    gateway: GatewayProcess, probe: ProbeUpstream
) -> None:
    """The upstream streams without end; the client reads the first bytes, then nothing,
    with its connection open. The model's total (2 s) still ends the upstream call."""
    closed_before = probe.closed["firehose"]
    body = body_of("firehose", stream=True)
    with connect(gateway, receive_buffer=4096) as sock:
        sock.sendall(head(len(body), "stalled-reader") + body)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")
        # Stop reading: the buffers fill, then the gateway's sends wait on this client.
        assert probe.wait_closed("firehose", closed_before + 1, BOUND)
        (line,) = lines_of(gateway, "stalled-reader")
        assert line["status"] == 200
        # Cut as the gateway's send waited on this client; or, on a machine too busy to
        # fill the buffers in time, ended by the upstream's own total timeout.
        assert line["error"] in ("stream_cut", "upstream_timeout")
        read_until_closed(sock)  # and the connection does not hang on either
    if line["error"] == "stream_cut":
        assert "did not read it within the model's total timeout" in gateway.output()
    probe_answered(gateway)


def test_a_slowloris_head_gets_408_and_is_closed_while_others_are_served(
    gateway: GatewayProcess,
) -> None:
    socks = [connect(gateway) for _ in range(10)]
    for sock in socks:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")
    sent_until = time.monotonic() + 3 * HEADER_TIMEOUT
    while time.monotonic() < sent_until:  # a header byte now and then, never the end
        probe_answered(gateway)
        for sock in socks:
            with contextlib.suppress(OSError):  # answered and closed already
                sock.sendall(b"x")
        time.sleep(0.2)
    for sock in socks:
        with sock:
            assert_408(read_until_closed(sock), "head")


def test_a_connection_that_sends_nothing_is_closed(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        assert read_until_closed(sock) == b""


def test_a_body_shorter_than_its_length_gets_408(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        sock.sendall(head(100, "short-body") + b'{"model": "echo"')
        assert_408(read_until_closed(sock), "body")
    (line,) = lines_of(gateway, "short-body")
    assert line["status"] == 408
    assert line["error"] == "request_timeout"


def test_a_slow_but_steady_request_within_the_timeouts_is_served(
    gateway: GatewayProcess,
) -> None:
    """The deadlines bound a request's head and body, not a connection's life: requests
    in pieces, and keep-alive, still work."""
    body = body_of("echo")
    with connect(gateway) as sock:
        for _ in range(3):
            request = head(len(body)) + body
            for piece in (request[:10], request[10:-5], request[-5:]):
                sock.sendall(piece)
                time.sleep(HEADER_TIMEOUT / 5)
            reply = b""
            while b'"usage"' not in reply:
                chunk = sock.recv(65536)
                assert chunk, reply
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 ")
        time.sleep(HEADER_TIMEOUT * 1.5)  # idle between requests: keep-alive's own timeout (5 s)
        sock.sendall(head(len(body)) + body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_the_timeouts_are_in_the_documented_schema() -> None:
    fields = ServerConfig.model_fields
    assert fields["header_timeout"].default == 10.0
    assert fields["body_timeout"].default == 30.0
    assert fields["header_timeout"].description
    assert fields["body_timeout"].description
