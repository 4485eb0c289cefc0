"""A real HTTP upstream for tests: Starlette under uvicorn in a background thread.

It speaks the OpenAI wire format (``POST /v1/chat/completions``, ``GET /v1/models``) and
Anthropic's Messages API (``POST /v1/messages``), streaming or not, and records every
request. What it does is chosen by the requested model name:

==============  ==============================================================
(anything else)  echo: "echo: " + the last user message's text; 10 prompt tokens,
                 one completion token per word; the reply is cut to max_tokens
                 words (finish_reason "length" / stop_reason "max_tokens")
fail-500         500 with an error body in that API's format
fail-400         400 invalid request error
fail-401         401 whose message contains the api key it received
fail-429         429 with ``Retry-After: 7``
fail-503         503 with ``Retry-After: 0``
fail-context     400 as OpenAI says a prompt is too long (param ``messages``, code
                 ``context_length_exceeded``), with rate-limit headers (OpenAI's
                 ``x-ratelimit-*``, Anthropic's ``anthropic-ratelimit-*``)
fail-quota       429 code ``rate_limit_exceeded``, ``Retry-After: 7``, rate-limit headers
fail-leaky       400 whose message and param contain the api key it received
slow-stream      streaming: one piece every 0.2 s (graceful shutdown tests)
slow             echo, after 0.5 s (latency-aware selection tests)
script-NAME      pops the next behaviour from ``up.scripts[NAME]`` (a model name above,
                 e.g. "fail-503", or "echo"); echo once the script is empty. Counts calls
                 in ``up.calls[NAME]``
hang             waits 30 s (or until the client goes away) before answering
cut-stream       streaming: two content chunks, then the connection is dropped
tool-call        one call to ``get_weather`` with ``{"city": "Paris"}``
tool-call-text   Anthropic: a text block ("Let me check.") and then that tool call
stream-error     streaming: Anthropic sends message_start, then an ``error`` event;
                 OpenAI one content chunk, then an error chunk, then a clean close
no-finish        OpenAI streaming: content, then a clean close without a finish_reason
bad-json         200 with a body that is not JSON (or SSE data that is not JSON)
==============  ==============================================================

The Anthropic endpoint also checks what the real API checks (an ``anthropic-version``
header, an ``x-api-key``, ``max_tokens``, no unknown fields, alternating non-empty turns)
and answers 400 or 401 like it would, so translation mistakes fail loudly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.serving import ServerThread

Json = dict[str, Any]
RecordedRequest = tuple[str, dict[str, str], Any]

PROMPT_TOKENS = 10
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = {"city": "Paris"}
TOOL_ARGUMENT_PIECES = ('{"city": ', '"Paris"}')
TOOL_TOKENS = 5
TOOL_PREFACE = "Let me check."
HANG_SECONDS = 30.0
MODELS = (
    "echo",
    "fail-500",
    "fail-400",
    "fail-401",
    "fail-429",
    "fail-503",
    "fail-context",
    "fail-quota",
    "fail-leaky",
    "slow-stream",
    "slow",
    "hang",
    "cut-stream",
    "tool-call",
    "tool-call-text",
    "stream-error",
    "no-finish",
    "bad-json",
)

# model -> (status, error type, message); {key} is the api key the request carried.
FAILURES = {
    "fail-500": (500, "api_error", "the fake upstream broke"),
    "fail-400": (400, "invalid_request_error", "the fake upstream refuses this request"),
    "fail-401": (401, "authentication_error", "invalid api key: {key}"),
    "fail-429": (429, "rate_limit_error", "too many requests, slow down"),
    "fail-503": (503, "api_error", "overloaded, try again"),
    "fail-context": (
        400,
        "invalid_request_error",
        "This model's maximum context length is 8192 tokens. However, your messages "
        "resulted in 9000 tokens. Please reduce the length of the messages.",
    ),
    "fail-quota": (429, "tokens", "Rate limit reached on tokens per min (TPM): Limit 30000"),
    "fail-leaky": (400, "invalid_request_error", "bad value in request from key {key}"),
}
# model -> (param, code) in its OpenAI error body (others send null for both).
ERROR_FIELDS = {
    "fail-context": ("messages", "context_length_exceeded"),
    "fail-quota": (None, "rate_limit_exceeded"),
    "fail-leaky": ("key {key}", "invalid_value"),
}
# model -> rate-limit headers sent with its error, each API's prefix before the name.
RATE_LIMITS = {
    model: {
        "limit-requests": "500",
        "remaining-requests": "499",
        "reset-requests": "120ms",
        "limit-tokens": "30000",
        "remaining-tokens": "0" if model == "fail-quota" else "21808",
        "reset-tokens": "16.38s",
    }
    for model in ("fail-context", "fail-quota")
}
RETRY_AFTER = {429: "7", 503: "0"}
SLOW_STREAM_GAP = 0.2
SLOW_SECONDS = 0.5
ANTHROPIC_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
    }
)
ANTHROPIC_BLOCKS = frozenset(
    {"text", "image", "tool_use", "tool_result", "document", "thinking", "redacted_thinking"}
)


class StreamCut(Exception):
    """Raised inside a streaming body: uvicorn drops the connection mid-response."""


class _HideStreamCuts(logging.Filter):
    """Keeps uvicorn from logging a traceback for every deliberate cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


_UVICORN_LOG = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _HideStreamCuts) for f in _UVICORN_LOG.filters):
    _UVICORN_LOG.addFilter(_HideStreamCuts())


def _words(text: str) -> list[str]:
    return text.split()


def _reply(prompt: str, limit: Any) -> tuple[str, bool]:
    """The echo reply and whether it was cut short by the client's token limit."""
    words = _words("echo: " + prompt)
    if isinstance(limit, int) and 0 < limit < len(words):
        return " ".join(words[:limit]), True
    return " ".join(words), False


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def _content_text(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a list (OpenAI's and
    Anthropic's content parts both say ``{"type": "text", "text": ...}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


class OpenAIFormat:
    """``/v1/chat/completions``."""

    rate_limit_prefix = "x-ratelimit-"

    @staticmethod
    def api_key(headers: dict[str, str]) -> str:
        return headers.get("authorization", "").removeprefix("Bearer ")

    @staticmethod
    def error(
        status: int, kind: str, message: str, param: str | None = None, code: str | None = None
    ) -> Json:
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}

    @staticmethod
    def check(body: Json, headers: dict[str, str]) -> tuple[int, str, str] | None:
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return 400, "invalid_request_error", "messages: a non-empty list is required"
        return None

    def _answer(self, body: Json) -> tuple[str, bool]:
        users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        prompt = _content_text(users[-1].get("content")) if users else ""
        return _reply(prompt, body.get("max_completion_tokens") or body.get("max_tokens"))

    def _envelope(self, model: str, kind: str) -> Json:
        return {"id": "chatcmpl-fake", "object": kind, "created": 1700000000, "model": model}

    def complete(self, model: str, body: Json) -> Json:
        if model == "tool-call":
            function = {"name": TOOL_NAME, "arguments": json.dumps(TOOL_ARGUMENTS)}
            call = {"id": "call_fake_1", "type": "function", "function": function}
            message: Json = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish, tokens = "tool_calls", TOOL_TOKENS
        else:
            text, cut = self._answer(body)
            message = {"role": "assistant", "content": text}
            finish, tokens = ("length" if cut else "stop"), len(_words(text))
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": tokens,
            "total_tokens": PROMPT_TOKENS + tokens,
        }
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return self._envelope(model, "chat.completion") | {"choices": [choice], "usage": usage}

    async def stream(self, model: str, body: Json) -> AsyncIterator[bytes]:
        base = self._envelope(model, "chat.completion.chunk")

        def chunk(delta: Json, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _sse(base | {"choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        if model == "tool-call":
            head = {"index": 0, "id": "call_fake_1", "type": "function"}
            yield chunk({"tool_calls": [head | {"function": {"name": TOOL_NAME, "arguments": ""}}]})
            for piece in TOOL_ARGUMENT_PIECES:
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            finish, tokens = "tool_calls", TOOL_TOKENS
        else:
            text, cut = self._answer(body)
            for i, piece in enumerate(_pieces(text)):
                if model == "cut-stream" and i == 2:
                    raise StreamCut(model)
                if model == "slow-stream":
                    await asyncio.sleep(SLOW_STREAM_GAP)
                if model == "stream-error" and i == 1:  # as vLLM reports a failure mid-stream
                    yield _sse({"error": {"message": "engine overloaded", "type": "server_error"}})
                    return
                yield chunk({"content": piece})
            if model == "no-finish":  # a clean close, but no finish_reason and no [DONE]
                return
            finish, tokens = ("length" if cut else "stop"), len(_words(text))
        yield chunk({}, finish)
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": tokens}
            usage["total_tokens"] = PROMPT_TOKENS + tokens
            yield _sse(base | {"choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"


def _check_turn(i: int, turn: Any) -> str | None:
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
        return f"messages.{i}.role: must be 'user' or 'assistant'"
    content = turn.get("content")
    if isinstance(content, str):
        return None if content else f"messages.{i}: content may not be empty"
    if not isinstance(content, list) or not content:
        return f"messages.{i}: content must be a non-empty string or list"
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in ANTHROPIC_BLOCKS:
            return f"messages.{i}.content.{j}.type: unknown block type {kind!r}"
        if kind == "text" and not block.get("text"):
            return f"messages.{i}.content.{j}: text content blocks must be non-empty"
    return None


class AnthropicFormat:
    """``/v1/messages``."""

    rate_limit_prefix = "anthropic-ratelimit-"

    @staticmethod
    def api_key(headers: dict[str, str]) -> str:
        return headers.get("x-api-key", "")

    @staticmethod
    def error(
        status: int, kind: str, message: str, param: str | None = None, code: str | None = None
    ) -> Json:
        return {"type": "error", "error": {"type": kind, "message": message}}

    @staticmethod
    def check(body: Json, headers: dict[str, str]) -> tuple[int, str, str] | None:
        if not headers.get("x-api-key"):
            return 401, "authentication_error", "x-api-key header is required"
        if not headers.get("anthropic-version"):
            return 400, "invalid_request_error", "anthropic-version: header is required"
        extra = sorted(set(body) - ANTHROPIC_FIELDS)
        if extra:
            return 400, "invalid_request_error", f"{extra[0]}: Extra inputs are not permitted"
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return 400, "invalid_request_error", "max_tokens: Field required"
        turns = body.get("messages")
        if not isinstance(turns, list) or not turns:
            return 400, "invalid_request_error", "messages: Field required"
        for i, turn in enumerate(turns):
            problem = _check_turn(i, turn)
            if problem is None and i and turn["role"] == turns[i - 1]["role"]:
                problem = f"messages.{i}: roles must alternate between user and assistant"
            if problem is not None:
                return 400, "invalid_request_error", problem
        return None

    def _answer(self, body: Json) -> tuple[str, bool]:
        users = [t for t in body["messages"] if t["role"] == "user"]
        return _reply(_content_text(users[-1]["content"]) if users else "", body["max_tokens"])

    def _blocks(self, model: str, body: Json) -> tuple[list[Json], str, int]:
        """(content blocks, stop_reason, output tokens) of the reply."""
        if model in ("tool-call", "tool-call-text"):
            use = {"type": "tool_use", "id": "toolu_fake_1", "name": TOOL_NAME}
            blocks = [use | {"input": dict(TOOL_ARGUMENTS)}]
            if model == "tool-call-text":
                blocks.insert(0, {"type": "text", "text": TOOL_PREFACE})
            return blocks, "tool_use", TOOL_TOKENS
        text, cut = self._answer(body)
        stop = "max_tokens" if cut else "end_turn"
        return [{"type": "text", "text": text}], stop, len(_words(text))

    def complete(self, model: str, body: Json) -> Json:
        blocks, stop, tokens = self._blocks(model, body)
        return {
            "id": "msg_fake_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": tokens},
        }

    async def stream(self, model: str, body: Json) -> AsyncIterator[bytes]:
        blocks, stop, tokens = self._blocks(model, body)
        start = self.complete(model, body) | {"content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}
        yield _sse({"type": "message_start", "message": start}, "message_start")
        yield _sse({"type": "ping"}, "ping")
        if model == "stream-error":
            error = self.error(529, "overloaded_error", "Overloaded")
            yield _sse(error, "error")
            return
        for index, block in enumerate(blocks):
            async for event in self._block_events(model, index, block):
                yield event
        delta = {"stop_reason": stop, "stop_sequence": None}
        usage = {"output_tokens": tokens}
        yield _sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
        yield _sse({"type": "message_stop"}, "message_stop")

    async def _block_events(self, model: str, index: int, block: Json) -> AsyncIterator[bytes]:
        def delta(payload: Json) -> bytes:
            event = {"type": "content_block_delta", "index": index, "delta": payload}
            return _sse(event, "content_block_delta")

        if block["type"] == "text":
            start: Json = {"type": "text", "text": ""}
            pieces = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        else:
            start = block | {"input": {}}
            json_pieces = ("", *TOOL_ARGUMENT_PIECES)
            pieces = [{"type": "input_json_delta", "partial_json": p} for p in json_pieces]
        event = {"type": "content_block_start", "index": index, "content_block": start}
        yield _sse(event, "content_block_start")
        for i, piece in enumerate(pieces):
            if model == "cut-stream" and i == 2:
                raise StreamCut(model)
            yield delta(piece)
        yield _sse({"type": "content_block_stop", "index": index}, "content_block_stop")


class FakeUpstream:
    """``with FakeUpstream() as up:`` serves on ``up.base_url`` until the block ends."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.scripts: dict[str, deque[str]] = defaultdict(deque)
        self.calls: Counter[str] = Counter()
        self.base_url = ""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ServerThread | None = None

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def start(self) -> None:
        self._server = ServerThread(self.app(), lifespan="off", timeout_graceful_shutdown=2)
        self._server.start()
        self.base_url = self._server.base_url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.stop()
        self._server = None

    def app(self) -> Starlette:
        openai, anthropic = OpenAIFormat(), AnthropicFormat()

        async def chat(request: Request) -> Response:
            return await self._answer(request, openai)

        async def messages(request: Request) -> Response:
            return await self._answer(request, anthropic)

        async def models(request: Request) -> Response:
            self._record(request, None)
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS]
            return JSONResponse({"object": "list", "data": data})

        return Starlette(
            routes=[
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/v1/messages", messages, methods=["POST"]),
                Route("/v1/models", models, methods=["GET"]),
            ]
        )

    def _record(self, request: Request, body: Any) -> dict[str, str]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append((request.url.path, headers, body))
        return headers

    @staticmethod
    def _failure(api: OpenAIFormat | AnthropicFormat, model: str, key: str) -> Response:
        status, kind, message = FAILURES[model]
        param, code = (f and f.format(key=key) for f in ERROR_FIELDS.get(model, (None, None)))
        headers = {"retry-after": RETRY_AFTER[status]} if status in RETRY_AFTER else {}
        limits = RATE_LIMITS.get(model, {})
        headers |= {api.rate_limit_prefix + name: value for name, value in limits.items()}
        body = api.error(status, kind, message.format(key=key), param, code)
        return JSONResponse(body, status, headers=headers)

    async def _hang(self, request: Request) -> None:
        deadline = time.monotonic() + HANG_SECONDS
        while time.monotonic() < deadline and not self._stopping.is_set():
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.05)

    async def _answer(self, request: Request, api: OpenAIFormat | AnthropicFormat) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        headers = self._record(request, body)
        if not isinstance(body, dict):
            return JSONResponse(api.error(400, "invalid_request_error", "body is not JSON"), 400)
        model = str(body.get("model") or "")
        if model.startswith("script-"):
            name = model.removeprefix("script-")
            with self._lock:
                self.calls[name] += 1
                script = self.scripts[name]
                model = script.popleft() if script else "echo"
            body["model"] = model
        problem = api.check(body, headers)
        if problem is None and model in FAILURES:
            return self._failure(api, model, api.api_key(headers))
        if problem is not None:
            status = problem[0]
            extra = {"retry-after": RETRY_AFTER[status]} if status in RETRY_AFTER else None
            return JSONResponse(api.error(*problem), status, headers=extra)
        if model == "hang":
            await self._hang(request)
        if model == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        streaming = body.get("stream") is True
        if model == "bad-json":
            text = "event: message_start\ndata: {not json\n\n" if streaming else "{not json"
            kind = "text/event-stream" if streaming else "application/json"
            return Response(text, media_type=kind)
        if streaming:
            return StreamingResponse(api.stream(model, body), media_type="text/event-stream")
        return JSONResponse(api.complete(model, body))


class ResettingServer:
    """Accepts connections and resets them at once (RST, no HTTP reply): a backend whose
    process died behind a live load balancer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            # Linger 0: close() sends RST instead of FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def __enter__(self) -> ResettingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()
