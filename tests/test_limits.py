"""Request limits on a real socket (head size, message count) and CORS, off unless set."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from tests.conftest import POLICY, GatewayFactory
from tests.test_http_api import BODY, CHAT, assert_openai_error

HEAD_LIMIT = 2048
LIMITED = POLICY.replace(
    "server:\n", f"server:\n  max_header_bytes: {HEAD_LIMIT}\n  max_messages: 3\n"
)


@pytest.fixture(scope="module")
def limited_url(make_gateway: GatewayFactory) -> str:
    return make_gateway(LIMITED)


@pytest.fixture
def http(limited_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited_url, timeout=10) as client:
        yield client


def raw_exchange(url: str, pieces: list[bytes]) -> bytes:
    """Send ``pieces`` one write each on a fresh socket; everything read until close."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server already answered and closed
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


def assert_431(reply: bytes) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert b"content-type: application/json" in head
    assert b"connection: close" in head
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "request_header_fields_too_large"
    assert str(HEAD_LIMIT) in error["message"]


def request_head(extra: bytes = b"", body: bytes = b"") -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: %d\r\n\r\n" % len(body)
    )


def test_headers_over_the_limit_get_431_at_once(limited_url: str) -> None:
    many = b"".join(b"x-filler-%d: %s\r\n" % (i, b"v" * 40) for i in range(60))
    assert_431(raw_exchange(limited_url, [request_head(many)]))


def test_one_header_that_never_ends_is_cut_off(limited_url: str) -> None:
    """httptools buffers a header until it is complete: the bound must hold before that."""
    start = b"GET /health HTTP/1.1\r\nhost: gw\r\nx-endless: "
    assert_431(raw_exchange(limited_url, [start, *[b"a" * 1024] * 64]))


def test_a_long_url_counts_too(limited_url: str) -> None:
    reply = raw_exchange(limited_url, [b"GET /health?" + b"q" * 4000 + b" HTTP/1.1\r\n\r\n"])
    assert_431(reply)


def test_bodies_do_not_count_and_keep_alive_works(limited_url: str) -> None:
    """A body many times the head limit, sent with its head in one write, then a second
    request on the same connection."""
    body = json.dumps({**BODY, "padding": "p" * (3 * HEAD_LIMIT)}).encode()
    headers = b"".join(b"x-near-%d: %s\r\n" % (i, b"v" * 100) for i in range(14))
    one = request_head(headers, body) + body
    host, port = limited_url.removeprefix("http://").split(":")
    with httpx.Client(base_url=limited_url, timeout=10) as client:
        near = {f"x-near-{i}": "v" * 100 for i in range(14)}
        for _ in range(2):  # one connection, two requests
            assert client.post(CHAT, content=body, headers=near).status_code == 200
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(one)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_more_messages_than_the_limit_is_400(http: httpx.Client) -> None:
    messages = [{"role": "user", "content": f"m{i}"} for i in range(4)]
    error = assert_openai_error(
        http.post(CHAT, json={"model": "auto", "messages": messages}),
        400,
        param="messages",
        code="too_many_messages",
    )
    assert "limit of 3" in str(error["message"])
    assert http.post(CHAT, json={"model": "auto", "messages": messages[:3]}).status_code == 200


def test_no_cors_headers_unless_configured(make_gateway: GatewayFactory) -> None:
    url = make_gateway(POLICY)
    origin = {"origin": "https://app.example.com"}
    with httpx.Client(base_url=url, timeout=10) as client:
        preflight = client.options(
            CHAT, headers={**origin, "access-control-request-method": "POST"}
        )
        answer = client.post(CHAT, json=BODY, headers=origin)
    for response in (preflight, answer):
        assert not [h for h in response.headers if h.startswith("access-control-")]
    assert preflight.status_code == 405
    assert answer.status_code == 200


def test_cors_when_configured(make_gateway: GatewayFactory) -> None:
    url = make_gateway(
        POLICY.replace(
            "server:\n", "server:\n  cors: {allow_origins: ['https://app.example.com']}\n"
        )
    )
    with httpx.Client(base_url=url, timeout=10) as client:
        preflight = client.options(
            CHAT,
            headers={
                "origin": "https://app.example.com",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        answer = client.post(CHAT, json=BODY, headers={"origin": "https://app.example.com"})
        stranger = client.post(CHAT, json=BODY, headers={"origin": "https://evil.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert answer.headers["access-control-allow-origin"] == "https://app.example.com"
    exposed = answer.headers["access-control-expose-headers"].lower()
    assert {"x-router-decision", "x-router-model", "x-router-request-id"} <= set(
        h.strip() for h in exposed.split(",")
    )
    assert "access-control-allow-origin" not in stranger.headers


def test_cors_refuses_credentials_for_any_origin() -> None:
    policy = POLICY.replace(
        "server:\n", "server:\n  cors: {allow_origins: ['*'], allow_credentials: true}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(
            policy, env={"UPSTREAM": "http://x", "OPENAI_KEY": "k", "ANTHROPIC_KEY": "k"}
        )
    assert "server.cors: allow_credentials with allow_origins '*'" in str(info.value)
