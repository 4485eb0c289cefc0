"""Client input never reaches a 500, and no answer leaves its connection unusable
(issue 19, items 7 and 8): on a real uvicorn server, over real sockets."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from router_proxy.engine.engine import Engine
from router_proxy.server.body import MAX_JSON_DEPTH
from router_proxy.server.surfaces import handler
from tests.conftest import GatewayFactory
from tests.support.upstream import FakeUpstream

POLICY = """\
providers:
  fake-openai: {type: openai, base_url: "${UPSTREAM}/v1"}
  fake-anthropic: {type: anthropic, base_url: "${UPSTREAM}", api_key: k}
  mock: {type: mock}
models:
  gpt-echo: {provider: fake-openai, upstream_model: echo}
  claude-echo: {provider: fake-anthropic, upstream_model: echo}
  local: {provider: mock}
decisions:
  - {name: default, when: true, route: {candidates: [gpt-echo]}}
"""
USER = [{"role": "user", "content": "hi"}]
# Each surface's path and a minimal valid body.
SURFACES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": "local", "messages": USER}),
    "responses": ("/v1/responses", {"model": "local", "input": "hi"}),
    "messages": ("/v1/messages", {"model": "local", "max_tokens": 8, "messages": USER}),
    "completions": ("/v1/completions", {"model": "local", "prompt": "hi"}),
    "embeddings": ("/v1/embeddings", {"model": "local", "input": "hi"}),
}
CHAT_PATH, CHAT_BODY = SURFACES["chat"]


@pytest.fixture(scope="module")
def gateway(make_gateway: GatewayFactory, upstream: FakeUpstream) -> str:
    return make_gateway(POLICY)


def nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels):
        value = [value]
    return value


def request_bytes(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
    return head.encode() + b"content-length: %d\r\n\r\n" % len(body) + body


class Connection:
    """One keep-alive connection: requests in turn, each answer read whole."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=15)
        self.buffer = b""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def exchange(self, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        """Status, headers, body; raises ConnectionError when the server closed."""
        self.sock.sendall(request_bytes(path, json.dumps(body).encode()))
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            payload = self._chunked()
        else:
            payload = self._take(int(headers["content-length"]))
        return int(lines[0].split()[1]), headers, payload

    def _take(self, length: int) -> bytes:
        while len(self.buffer) < length:
            self._read()
        taken, self.buffer = self.buffer[:length], self.buffer[length:]
        return taken

    def _chunked(self) -> bytes:
        pieces = []
        while True:
            while b"\r\n" not in self.buffer:
                self._read()
            size_line, _, self.buffer = self.buffer.partition(b"\r\n")
            size = int(size_line, 16)
            pieces.append(self._take(size + 2)[:size])
            if size == 0:
                return b"".join(pieces)

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data


def assert_client_error(status: int, payload: bytes, fragment: str) -> None:
    assert 400 <= status < 500, (status, payload[:300])
    assert fragment in payload.decode(), payload[:300]


@pytest.mark.parametrize("value", ["x", [1], 5, {"include_usage": "maybe"}])
@pytest.mark.parametrize("surface", ["chat", "completions"])
def test_stream_options_of_the_wrong_shape_is_400(gateway: str, surface: str, value: Any) -> None:
    path, body = SURFACES[surface]
    with Connection(gateway) as conn:
        for stream in (True, False):
            status, _, payload = conn.exchange(
                path, body | {"stream": stream, "stream_options": value}
            )
            assert status == 400, payload
            assert json.loads(payload)["error"]["param"].startswith("stream_options")
        # Extra keys pass through; include_usage still works.
        status, _, payload = conn.exchange(
            path, body | {"stream": True, "stream_options": {"include_usage": True, "x": 1}}
        )
        assert status == 200, payload
        assert b'"usage"' in payload


@pytest.mark.parametrize("surface", list(SURFACES))
def test_stream_options_never_reaches_a_500_on_any_surface(gateway: str, surface: str) -> None:
    path, body = SURFACES[surface]
    with Connection(gateway) as conn:
        for value in ("x", [1], 5):
            status, _, payload = conn.exchange(path, body | {"stream_options": value})
            assert status < 500, (status, payload)


@pytest.mark.parametrize("surface", list(SURFACES))
def test_deep_nesting_in_an_unknown_field_is_400_on_every_surface(
    gateway: str, surface: str
) -> None:
    path, body = SURFACES[surface]
    with Connection(gateway) as conn:
        status, _, payload = conn.exchange(path, body | {"x_unknown": nested(300)})
        assert_client_error(status, payload, f"more than {MAX_JSON_DEPTH} levels")
        # Within the limit it is passed on, and the connection serves the next request.
        status, _, payload = conn.exchange(path, body | {"x_unknown": nested(MAX_JSON_DEPTH - 2)})
        assert status == 200, payload


@pytest.mark.parametrize(
    ("surface", "body"),
    [
        ("chat", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "y": nested(300)}]}]}),
        ("responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi", "y": nested(300)}]}]}),
        ("messages", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "y": nested(300)}]}]}),
    ],
)  # fmt: skip
def test_deep_nesting_in_a_content_part_is_400(
    gateway: str, surface: str, body: dict[str, Any]
) -> None:
    path, base = SURFACES[surface]
    for model in ("local", "gpt-echo", "claude-echo"):  # translated, passed through
        with Connection(gateway) as conn:
            status, _, payload = conn.exchange(path, base | body | {"model": model})
            assert_client_error(status, payload, "levels deep")


def test_tool_arguments_too_deep_to_forward_are_400_not_500(gateway: str) -> None:
    """The Anthropic translation parses a tool call's arguments string into an object: a
    string is not nested, so only the encoding on the way out can tell."""
    arguments = json.dumps({"a": nested(300)})
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    with Connection(gateway) as conn:
        status, _, payload = conn.exchange(
            CHAT_PATH, {"model": "claude-echo", "messages": messages}
        )
        assert_client_error(status, payload, "nested too deeply")
        status, _, _ = conn.exchange(CHAT_PATH, CHAT_BODY)
        assert status == 200


def _boom(*args: object, **kwargs: object) -> Any:
    raise RuntimeError("forced failure")


@pytest.mark.parametrize(
    ("target", "path", "body"),
    [
        # The surfaces' fast path: an error inside the handler.
        ((Engine, "route"), CHAT_PATH, CHAT_BODY),
        # After a whole answer, in the work done once it has gone (accounting).
        ((Engine, "answered"), CHAT_PATH, CHAT_BODY),
        # FastAPI's routes: Starlette sends the 500, then raises the error to the server.
        ((handler, "dry_run"), "/v1/route", CHAT_BODY),
    ],
    ids=["fast-path", "after-the-answer", "fastapi-route"],
)
def test_the_connection_stays_usable_after_an_unexpected_error(
    gateway: str,
    monkeypatch: pytest.MonkeyPatch,
    target: tuple[object, str],
    path: str,
    body: dict[str, Any],
) -> None:
    monkeypatch.setattr(*target, _boom)
    with Connection(gateway) as conn:
        for _ in range(3):
            status, headers, payload = conn.exchange(path, body)
            assert status in (200, 500), payload
            if status == 500:
                assert json.loads(payload)["error"]["type"] == "server_error"
            # Either the connection stays open, or the answer said it would close.
            assert headers.get("connection") != "close"
        monkeypatch.undo()
        status, _, payload = conn.exchange(CHAT_PATH, CHAT_BODY)  # the next one is answered
        assert status == 200, payload
