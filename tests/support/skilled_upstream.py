"""A real HTTP upstream (OpenAI chat wire format, on a loopback port) whose models have
known skills, for cascades and aggregates:

==========  ==================================================================
cheap-a     right on easy questions ("4"); wrong on hard ones ("7")
cheap-b     right on easy questions; wrong on hard ones, differently ("9")
cheap-c     right on both (it agrees with the expensive model on hard ones)
expensive   right on both ("12" on hard ones)
judge       a verifier: "yes" when the proposed answer is right, else "no"
refiner     reads the candidates and writes the right answer
fail        500 on every call
busy        503 on every call (retried, then fallen back from)
hang        answers only after HANG_SECONDS (first-byte timeouts)
slow-NAME   NAME, after SLOW_SECONDS (a request's deadline across stages)
plain-NAME  NAME, but never with logprobs (as an Anthropic model)
cramped-NAME NAME, but a prompt over CRAMPED_CHARS characters is refused as too long
            (OpenAI's 400 ``context_length_exceeded``)
tooler      calls the tool ``lookup`` with ``{"q": 12}`` instead of answering in text
signed-NAME NAME, its answer signed with an e-mail address (``Mail NAME@example.com.``)
==========  ==================================================================

A question is hard when its text contains "hard". Answers read "The answer is N.";
usage: 10 prompt tokens, one completion token per word. With ``logprobs: true`` every
token has log-probability -0.05 when the model is right and -2.0 when wrong. Streams
send the answer word by word, then the finish, then usage when asked.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.serving import ServerThread

EASY, HARD = "4", "12"
WRONG = {"cheap-a": "7", "cheap-b": "9"}
PROMPT_TOKENS = 10
HANG_SECONDS = 3.0
SLOW_SECONDS = 0.6
CRAMPED_CHARS = 1000


def truth(question: str) -> str:
    return HARD if "hard" in question else EASY


def _last_user(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def answer_of(model: str, prompt: str) -> tuple[str, bool]:
    """The model's reply to ``prompt`` and whether it is right."""
    if model == "judge":
        question, _, proposed = prompt.partition("Proposed answer:")
        right = re.search(rf"\b{truth(question)}\b", proposed.split("Is the")[0]) is not None
        return ("yes" if right else "no"), True
    if model == "refiner":
        return f"The answer is {truth(prompt)}.", True
    correct = truth(prompt)
    given = WRONG.get(model, correct) if correct == HARD else correct
    return f"The answer is {given}.", given == correct


def _too_long() -> dict[str, Any]:
    message = "This model's maximum context length is 1000 tokens; your messages are longer."
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    return {"error": error}


def _tool_call() -> dict[str, Any]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": 12}'},
    }
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {
        "id": "chatcmpl-tooler",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "tooler",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 5, "total_tokens": 15},
    }


class SkilledUpstream:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (model, body)
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._text, methods=["POST"]),
            ]
        )
        self.server = ServerThread(app)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def models_called(self) -> list[str]:
        return [model for model, _ in self.requests]

    async def _text(self, request: Request) -> Response:
        """A legacy text completion: the model's answer to the prompt, never cascaded."""
        body = await request.json()
        model = body["model"]
        self.requests.append((model, body))
        text, _ = answer_of(model, str(body["prompt"]))
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 1, "total_tokens": 11}
        choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
        return JSONResponse(
            {
                "id": f"cmpl-{model}",
                "object": "text_completion",
                "created": 1700000000,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        )

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        self.requests.append((model, body))
        if model == "fail":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, 500)
        if model == "busy":
            return JSONResponse({"error": {"message": "busy", "type": "server_error"}}, 503)
        if model.startswith("cramped-"):
            model = model.removeprefix("cramped-")
            if sum(len(str(m.get("content"))) for m in body["messages"]) > CRAMPED_CHARS:
                return JSONResponse(_too_long(), 400)
        signed = model.startswith("signed-")
        model = model.removeprefix("signed-")
        logprobs = bool(body.get("logprobs")) and not model.startswith("plain-")
        model = model.removeprefix("plain-")
        if model == "hang":
            await asyncio.sleep(HANG_SECONDS)
        if model.startswith("slow-"):
            await asyncio.sleep(SLOW_SECONDS)
            model = model.removeprefix("slow-")
        if model == "tooler" and not body.get("stream"):
            return JSONResponse(_tool_call())
        text, right = answer_of(model, _last_user(body))
        if signed:
            text += f" Mail {model}@example.com."
        words = text.split(" ")
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": len(words),
            "total_tokens": PROMPT_TOKENS + len(words),
        }
        if body.get("stream"):
            asked = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._events(model, words, usage if asked else None),
                media_type="text/event-stream",
            )
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        if logprobs:
            value = -0.05 if right else -2.0
            choice["logprobs"] = {
                "content": [{"token": w, "logprob": value, "top_logprobs": []} for w in words]
            }
        return JSONResponse(
            {
                "id": f"chatcmpl-{model}",
                "object": "chat.completion",
                "created": 1700000000,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        )

    async def _events(
        self, model: str, words: list[str], usage: dict[str, int] | None
    ) -> AsyncIterator[bytes]:
        head = {
            "id": f"chatcmpl-{model}",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
        }

        def event(data: dict[str, Any]) -> bytes:
            return b"data: " + json.dumps(head | data).encode() + b"\n\n"

        yield event(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ]
            }
        )
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            yield event(
                {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            )
        yield event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            yield event({"choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    def __enter__(self) -> SkilledUpstream:
        self.server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.stop()
