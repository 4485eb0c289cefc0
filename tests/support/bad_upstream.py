"""An upstream that says success and sends what no API would (issue 19, items 4-6).

A real HTTP server (Starlette under uvicorn in a thread, like ``FakeUpstream``) serving
every API the providers call: ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/responses`` (OpenAI-compatible), ``/v1/messages`` (Anthropic).
What it answers is chosen by the requested model name; each name answers in the shape of
the API it was called on:

=====================  ==============================================================
ok                     a valid answer (a stream when asked), with usage
error-200              200 with that API's error object
array-200              200 with a JSON array
empty-200              200 with ``{}`` (no choices, no data, not a message/response)
redirect               307 to ``/moved/...`` (which answers like ``ok``) with a JSON
                       body that is itself a valid answer
usage-string           a valid answer whose usage counts are strings
usage-list             a valid answer whose usage is a list
usage-negative         a valid answer whose usage counts are negative
usage-huge             a valid answer whose usage counts are 10**15
stream-json            a stream request answered 200 ``application/json`` (an error)
stream-bad-first       a stream whose first event's data is not JSON
stream-array-first     a stream whose first event's data is a JSON array
stream-bad-later       a stream: one good event, then data that is not JSON
stream-choices-5       a chat stream: one good chunk, then ``"choices": 5``
stream-usage-negative  a valid stream whose usage counts are negative
stream-usage-string    a valid stream whose usage is a string
stream-huge-line       a stream whose first event is 50 MB with no newline
                       (``HUGE_LINE_BYTES``, in 1 MB pieces)
=====================  ==============================================================

``up.requests`` records (path, model) of every call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.serving import ServerThread

Json = dict[str, Any]
HUGE_LINE_BYTES = 50 * 1024 * 1024
HUGE_ANSWER_BYTES = 4 * 1024 * 1024
TEXT = "fine answer"
PROMPT_TOKENS, COMPLETION_TOKENS = 7, 2
BAD_USAGE: dict[str, Any] = {
    "usage-string": "ten",
    "usage-list": [1, 2],
    "usage-negative": -5,
    "usage-huge": 10**15,
}


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def _counts(model: str, prompt_key: str, completion_key: str) -> Any:
    """The usage object in an API's keys, malformed the way ``model`` asks."""
    bad = BAD_USAGE.get(model.removeprefix("stream-"))
    if isinstance(bad, list):
        return bad
    if bad is not None and model.startswith("stream-") and isinstance(bad, str):
        return bad  # the whole usage a string
    if bad is not None:
        return {prompt_key: bad, completion_key: bad}
    return {prompt_key: PROMPT_TOKENS, completion_key: COMPLETION_TOKENS}


class Chat:
    """``/v1/chat/completions`` (``/v1/completions`` differs only in ``text``)."""

    def __init__(self, kind: str = "chat.completion") -> None:
        self.kind = kind

    def error(self) -> Json:
        return {"error": {"message": "quota exceeded upstream", "type": "server_error"}}

    def answer(self, model: str) -> Json:
        if self.kind == "text_completion":
            choice: Json = {"index": 0, "text": TEXT, "finish_reason": "stop"}
        else:
            message = {"role": "assistant", "content": TEXT}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = _counts(model, "prompt_tokens", "completion_tokens")
        return {"id": "x-1", "object": self.kind, "model": model, "choices": [choice]} | {
            "usage": usage
        }

    def _chunk(self, model: str, delta: Json, finish: str | None = None) -> bytes:
        if self.kind == "text_completion":
            choice: Json = {"index": 0, "text": delta.get("content", ""), "finish_reason": finish}
        else:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse({"id": "x-1", "object": self.kind, "model": model, "choices": [choice]})

    def events(self, model: str) -> list[bytes]:
        """The valid stream; the usage chunk (always sent) as ``model`` asks."""
        usage = _counts(model, "prompt_tokens", "completion_tokens")
        return [
            self._chunk(model, {"role": "assistant", "content": ""}),
            self._chunk(model, {"content": TEXT}),
            self._chunk(model, {}, "stop"),
            _sse({"id": "x-1", "object": self.kind, "choices": [], "usage": usage}),
            b"data: [DONE]\n\n",
        ]

    def malformed(self, model: str) -> bytes:
        return b'data: {"id": "x-1", "choices": 5}\n\n'


class Embeddings:
    def error(self) -> Json:
        return Chat().error()

    def answer(self, model: str) -> Json:
        item = {"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}
        usage = _counts(model, "prompt_tokens", "total_tokens")
        return {"object": "list", "model": model, "data": [item], "usage": usage}

    def events(self, model: str) -> list[bytes]:
        raise NotImplementedError("embeddings are not streamed")

    def malformed(self, model: str) -> bytes:
        raise NotImplementedError


class Messages:
    """Anthropic's ``/v1/messages``."""

    def error(self) -> Json:
        return {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

    def answer(self, model: str) -> Json:
        return {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": _counts(model, "input_tokens", "output_tokens"),
        }

    def events(self, model: str) -> list[bytes]:
        start = self.answer(model) | {"content": [], "stop_reason": None}
        text = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": TEXT}
        stop = {"stop_reason": "end_turn", "stop_sequence": None}
        return [
            _sse({"type": "message_start", "message": start}, "message_start"),
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": text},
                "content_block_start",
            ),
            _sse(
                {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
            ),
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse(
                {"type": "message_delta", "delta": stop, "usage": start["usage"]}, "message_delta"
            ),
            _sse({"type": "message_stop"}, "message_stop"),
        ]

    def malformed(self, model: str) -> bytes:
        return b"event: content_block_delta\ndata: [5]\n\n"


class Responses:
    """OpenAI's ``/v1/responses``."""

    def error(self) -> Json:
        return Chat().error()

    def answer(self, model: str) -> Json:
        text = {"type": "output_text", "text": TEXT, "annotations": []}
        item = {"type": "message", "id": "msg_1", "role": "assistant", "content": [text]}
        return {
            "id": "resp_1",
            "object": "response",
            "status": "completed",
            "model": model,
            "output": [item],
            "error": None,
            "usage": _counts(model, "input_tokens", "output_tokens"),
        }

    def events(self, model: str) -> list[bytes]:
        done = self.answer(model)
        created = done | {"status": "in_progress", "output": [], "usage": None}
        delta = {"type": "response.output_text.delta", "item_id": "msg_1", "delta": TEXT}
        return [
            _sse({"type": "response.created", "response": created}, "response.created"),
            _sse(delta, "response.output_text.delta"),
            _sse({"type": "response.completed", "response": done}, "response.completed"),
        ]

    def malformed(self, model: str) -> bytes:
        return b"event: response.output_text.delta\ndata: 5\n\n"


Api = Chat | Embeddings | Messages | Responses


class BadUpstream:
    """``with BadUpstream() as up:`` serves on ``up.base_url`` until the block ends."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.base_url = ""
        self._lock = threading.Lock()
        self._server: ServerThread | None = None

    def __enter__(self) -> BadUpstream:
        self._server = ServerThread(self.app(), lifespan="off", timeout_graceful_shutdown=2)
        self._server.start()
        self.base_url = self._server.base_url
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def app(self) -> Starlette:
        apis: dict[str, Api] = {
            "/v1/chat/completions": Chat(),
            "/v1/completions": Chat("text_completion"),
            "/v1/embeddings": Embeddings(),
            "/v1/messages": Messages(),
            "/v1/responses": Responses(),
        }

        def endpoint(api: Api) -> Callable[[Request], Any]:
            async def serve(request: Request) -> Response:
                return await self._answer(request, api)

            return serve

        routes = [Route(path, endpoint(api), methods=["POST"]) for path, api in apis.items()]
        routes += [
            Route("/moved" + path, endpoint(api), methods=["POST"]) for path, api in apis.items()
        ]
        return Starlette(routes=routes)

    async def _answer(self, request: Request, api: Api) -> Response:
        body = json.loads(await request.body())
        model = str(body.get("model"))
        with self._lock:
            self.requests.append((request.url.path, model))
        if request.url.path.startswith("/moved"):
            model = "ok"
        stream = body.get("stream") is True
        if model.startswith("stream-") and stream:
            return _streamed(api, model)
        if model == "stream-json" or model == "error-200":
            return JSONResponse(api.error())
        if model == "array-200":
            return JSONResponse([api.answer("ok")])
        if model == "empty-200":
            return JSONResponse({})
        if model == "huge-200":  # chunked, no length declared: HUGE_ANSWER_BYTES of it
            return StreamingResponse(_huge_answer(), media_type="application/json")
        if model == "redirect":
            location = {"location": "/moved" + request.url.path}
            return JSONResponse(api.answer("ok"), 307, headers=location)
        if stream:
            return _stream_of(api.events(model))
        return JSONResponse(api.answer(model))


def _stream_of(events: list[bytes]) -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    return StreamingResponse(gen(), media_type="text/event-stream")


def _streamed(api: Api, model: str) -> Response:
    if model == "stream-json":
        return JSONResponse(api.error())
    if model == "stream-huge-line":
        return StreamingResponse(_huge_line(), media_type="text/event-stream")
    good = api.events("ok")
    firsts = {
        "stream-bad-first": [b"data: {not json\n\n", *good],
        "stream-array-first": [b"data: [1, 2]\n\n", *good],
        "stream-bad-later": [*good[:2], b"data: {not json}\n\n", *good[2:]],
        "stream-choices-5": [*good[:2], api.malformed(model), *good[2:]],
    }
    if model in firsts:
        return _stream_of(firsts[model])
    return _stream_of(api.events(model))  # usage-* streams: valid, but for their usage


async def _huge_answer() -> AsyncIterator[bytes]:
    yield b'{"id": "x", "object": "chat.completion", "choices": [], "pad": "'
    for _ in range(HUGE_ANSWER_BYTES // 65536):
        yield b"a" * 65536
    yield b'"}'


async def _huge_line() -> AsyncIterator[bytes]:
    piece = b"a" * (1024 * 1024)
    yield b'data: {"choices": [{"index": 0, "delta": {"content": "'
    for _ in range(HUGE_LINE_BYTES // len(piece)):
        yield piece
