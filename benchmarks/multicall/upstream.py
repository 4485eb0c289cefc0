"""The benchmark's mock upstream: OpenAI chat completions on a loopback port (aiohttp,
its own thread and loop), each answer after a fixed delay, with known skills: ``cheap-*``
models agree on easy questions and split on hard ones (the question's text says which),
every other model answers right. Streams send the answer in four chunks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
from aiohttp import web

PROMPT_TOKENS = 10


def _answer(model: str, question: str) -> str:
    if model.startswith("cheap") and "hard" in question:
        return f"The answer is {ord(model[-1])}."  # each cheap model a wrong one of its own
    return "The answer is 12." if "hard" in question else "The answer is 4."


class MockUpstream:
    def __init__(self, delay_ms: float) -> None:
        self.delay = delay_ms / 1000
        self.port = 0
        self.calls = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._ready.set()
        loop.run_forever()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = orjson.loads(await request.read())
        self.calls += 1
        question = str(body["messages"][-1].get("content"))
        text = _answer(body["model"], question)
        words = text.split(" ")
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": len(words)}
        head = {"id": "chatcmpl-bench", "created": 1700000000, "model": body["model"]}
        await asyncio.sleep(self.delay)  # the model's time to its first token
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            answer = head | {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage,
            }
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        chunk = head | {"object": "chat.completion.chunk"}
        for i, word in enumerate(words):
            delta = {"content": word if i == 0 else " " + word}
            event = chunk | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        end = chunk | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(b"data: " + orjson.dumps(end) + b"\n\n")
        await response.write(b"data: " + orjson.dumps(chunk | {"choices": [], "usage": usage}))
        await response.write(b"\n\ndata: [DONE]\n\n")
        return response
