"""Guards on the request path's speed, without timing anything: each test fails when a
call measured as slow (benchmarks/overhead/README.md) comes back on the hot path."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import aiohttp
import httpx
import pytest
from starlette.responses import Response, StreamingResponse
from starlette.routing import Router

from router_proxy.config.load import load_config_text
from router_proxy.observability.logging import (
    ACCESS_LOGGER,
    JsonLinesWriter,
    configure_logging,
    log_request,
)
from router_proxy.providers.http_provider import HTTPProvider
from router_proxy.server.app import create_app
from router_proxy.server.event_stream import EventStreamResponse
from tests.support.serving import ServerThread
from tests.support.upstream import FakeUpstream

POLICY = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
models:
  echo: {provider: up, upstream_model: echo}
decisions:
  - {name: default, when: true, route: {candidates: [echo]}}
"""
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gateway(upstream: FakeUpstream) -> Iterator[tuple[str, Any]]:
    config, _ = load_config_text(POLICY, env={"UPSTREAM": upstream.base_url})
    app = create_app(config)
    with ServerThread(app) as server:
        yield server.base_url, app


def test_the_providers_pooled_client_is_one_aiohttp_session(
    gateway: tuple[str, Any],
) -> None:
    """httpx's pool re-scanned every idle connection per call (CPU per request grew with
    concurrency): the providers must use one pooled aiohttp session each."""
    _, app = gateway
    providers = app.state.slot.current.providers
    sessions = [p.session for p in providers.values() if isinstance(p, HTTPProvider)]
    assert sessions
    for session in sessions:
        assert isinstance(session, aiohttp.ClientSession)
        assert session.connector is not None
        assert session.connector.limit > 0


def test_the_server_imports_neither_httpx_nor_torch() -> None:
    """httpx left the server (its failed sniffio import ran on every call); torch is
    loaded only by a policy that asks for the transformer encoder (hundreds of MB)."""
    code = (
        "import sys; from pathlib import Path; "
        "from router_proxy.config.load import load_config; "
        "from router_proxy.server.app import create_app; "
        "create_app(load_config(Path('configs/default.yaml'))[0]); "
        "print(sorted(m for m in ('httpx', 'httpcore', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_surface_routes_skip_fastapis_routing(
    gateway: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI's routing and middleware cost more than the whole routing pipeline: chat
    is answered by the fast path; other routes still go through FastAPI."""
    base_url, app = gateway
    assert "/v1/chat/completions" in app.fast_routes
    routed: list[str] = []
    original = Router.__call__

    async def counting(self: Router, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("app") is app:  # not the fake upstream's own routing
            routed.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", counting)
    with httpx.Client(base_url=base_url) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert client.post("/v1/chat/completions", json=CHAT | {"stream": True}).status_code == 200
        assert client.get("/v1/models").status_code == 200
    assert routed == ["/v1/models"]


def test_streams_are_sent_without_an_anyio_task_group(
    gateway: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starlette's StreamingResponse starts an anyio task group per stream (uvicorn speaks
    ASGI 2.3); the gateway's streams are EventStreamResponses."""
    base_url, app = gateway
    sent: list[str] = []
    for kind in (StreamingResponse, EventStreamResponse):

        def tracking(original: Any) -> Any:
            async def call(self: Response, scope: Any, receive: Any, send: Any) -> None:
                if scope.get("app") is app:  # not the fake upstream's own answers
                    sent.append(type(self).__name__)
                await original(self, scope, receive, send)

            return call

        monkeypatch.setattr(kind, "__call__", tracking(kind.__call__))
    with httpx.Client(base_url=base_url) as client:
        answer = client.post("/v1/chat/completions", json=CHAT | {"stream": True})
    assert answer.status_code == 200
    assert answer.text.endswith("data: [DONE]\n\n")
    assert sent == ["EventStreamResponse"]


def test_the_request_line_is_written_by_the_writer_thread_not_the_loop() -> None:
    """A synchronous write and flush per request cost the loop ~9% of its time."""

    class RecordingStream(io.StringIO):
        writers: ClassVar[list[str]] = []

        def write(self, text: str) -> int:
            self.writers.append(threading.current_thread().name)
            return super().write(text)

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("info")
        writer = root.handlers[0]
        assert isinstance(writer, JsonLinesWriter)
        stream = RecordingStream()
        writer.stream = stream
        log_request({"request_id": "r1", "status": 200})
        logging.getLogger(ACCESS_LOGGER).warning("and a plain record")
        writer.close()
    finally:
        root.handlers[:], root.level = saved
    lines = stream.getvalue().splitlines()
    assert '"event":"request"' in lines[0]
    assert '"request_id":"r1"' in lines[0]
    assert '"message":"and a plain record"' in lines[1]
    assert set(stream.writers) == {"log-writer"}
