"""A chat completion stream as the Responses API's typed events.

In: bytes holding one or more chat SSE events (``data: {chat.completion.chunk}``, ending
with ``data: [DONE]``), or ``data: {"error": {...}}`` for a failure after the first byte.
Events are split on blank lines here, whatever the pieces' sizes.

Out, each as ``event: <type>\\ndata: {"type": <type>, "sequence_number": n, ...}``::

    response.created, response.in_progress
    per text answer:  response.output_item.added (message), response.content_part.added,
                      response.output_text.delta ..., response.output_text.done,
                      response.content_part.done, response.output_item.done
                      (a refusal: the same with response.refusal.delta / .done)
    per tool call:    response.output_item.added (function_call),
                      response.function_call_arguments.delta ... / .done,
                      response.output_item.done
    response.completed, or response.incomplete (the answer hit max_output_tokens), with
    the whole response and its usage; or, on a failure, response.failed

No ``[DONE]``: the Responses stream ends after its last event. ``response.failed`` also
carries the OpenAI error object at its top level (``"error": {...}``), which is what
makes the official SDKs raise an ``APIError`` instead of ending the stream quietly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from router_proxy.translate.responses_output import (
    Json,
    call_item,
    envelope,
    finish,
    item_status,
    message_item,
    new_id,
    refusal_part,
    text_part,
    usage_of,
)


@dataclass(slots=True)
class _Message:
    index: int  # output_index
    id: str
    parts: list[Json] = field(default_factory=list)
    final: Json | None = None  # the item once done


@dataclass(slots=True)
class _Call:
    index: int
    id: str
    call_id: str
    name: str
    arguments: str = ""


class ResponsesStream:
    """One stream's translation: ``feed`` each piece, then ``close`` at the end."""

    def __init__(self, echo: Json, model: str) -> None:
        self.response = envelope(new_id("resp"), int(time.time()), model, echo)
        self.ended = False
        self._seq = 0
        self._out: list[bytes] = []
        self._buffer = b""
        self._started = False
        self._items: list[_Message | _Call] = []
        self._message: _Message | None = None  # the message being written, if any
        self._calls: dict[int, _Call] = {}  # by the chat tool call's index
        self._finish_reason: str | None = None
        self._usage: Json | None = None

    def feed(self, data: bytes) -> bytes:
        """The Responses events for ``data`` (possibly none yet)."""
        self._buffer += data.replace(b"\r\n", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        for event in events:
            name, payload = _parse(event)
            if payload is not None and not self.ended:
                self._event(name, payload)
        return self._flush()

    def close(self) -> bytes:
        """The last events of a stream that ended without ``[DONE]`` or an error."""
        if not self.ended:
            if self._finish_reason is not None:
                self._end()
            else:
                self._fail(_error("the upstream stream ended before its answer was complete"))
        return self._flush()

    def _flush(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def _emit(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        self._out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n")

    def _event(self, name: bytes | None, payload: bytes) -> None:
        if payload == b"[DONE]":
            self._end()
            return
        try:
            chunk: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            chunk = None
        if not isinstance(chunk, dict):
            self._fail(_error("the upstream sent an event that is not a JSON object"))
            return
        if not self._started:
            self._start(chunk.get("model"))
        if name == b"error" or chunk.get("error") is not None:
            self._fail(_error_of(chunk.get("error")))
            return
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage_of(chunk["usage"])
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice)

    def _start(self, model: Any) -> None:
        self._started = True
        if isinstance(model, str) and model:
            self.response["model"] = model
        self._emit("response.created", response=self.response)
        self._emit("response.in_progress", response=self.response)

    def _choice(self, choice: Json) -> None:
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._text(text, "output_text" if key == "content" else "refusal")
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                self._tool_call(call)
        if isinstance(choice.get("finish_reason"), str):
            self._finish_reason = choice["finish_reason"]

    def _text(self, delta: str, kind: str) -> None:
        message = self._message
        if message is None:
            message = self._message = _Message(len(self._items), new_id("msg"))
            self._items.append(message)
            item = message_item(message.id, [], "in_progress")
            self._emit("response.output_item.added", output_index=message.index, item=item)
        if not message.parts or message.parts[-1]["type"] != kind:
            if message.parts:
                self._close_part(message)
            part = text_part("") if kind == "output_text" else refusal_part("")
            message.parts.append(part)
            self._emit(
                "response.content_part.added",
                item_id=message.id,
                output_index=message.index,
                content_index=len(message.parts) - 1,
                part=part,
            )
        part, where = message.parts[-1], self._where(message)
        if kind == "output_text":
            part["text"] += delta
            self._emit("response.output_text.delta", **where, delta=delta, logprobs=[])
        else:
            part["refusal"] += delta
            self._emit("response.refusal.delta", **where, delta=delta)

    @staticmethod
    def _where(message: _Message) -> Json:
        return {
            "item_id": message.id,
            "output_index": message.index,
            "content_index": len(message.parts) - 1,
        }

    def _close_part(self, message: _Message) -> None:
        part, where = message.parts[-1], self._where(message)
        if part["type"] == "output_text":
            self._emit("response.output_text.done", **where, text=part["text"], logprobs=[])
        else:
            self._emit("response.refusal.done", **where, refusal=part["refusal"])
        self._emit("response.content_part.done", **where, part=part)

    def _close_message(self, status: str) -> None:
        message, self._message = self._message, None
        if message is None:
            return
        if message.parts:
            self._close_part(message)
        message.final = message_item(message.id, message.parts, status)
        self._emit("response.output_item.done", output_index=message.index, item=message.final)

    def _tool_call(self, delta: Json) -> None:
        index = delta.get("index")
        if not isinstance(index, int):  # some servers leave it out: a new id is a new call
            known = {call.call_id for call in self._calls.values()}
            fresh = isinstance(delta.get("id"), str) and delta["id"] not in known
            index = max(self._calls, default=-1) + (1 if fresh or not self._calls else 0)
        function = delta.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        call = self._calls.get(index)
        if call is None:
            self._close_message("completed")  # text before a call is a message of its own
            call_id = delta.get("id")
            call = _Call(
                len(self._items),
                new_id("fc"),
                call_id if isinstance(call_id, str) and call_id else new_id("call"),
                name if isinstance(name, str) else "",
            )
            self._calls[index] = call
            self._items.append(call)
            item = call_item(call.id, call.call_id, call.name, "", "in_progress")
            self._emit("response.output_item.added", output_index=call.index, item=item)
        elif not call.name and isinstance(name, str):
            call.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            call.arguments += arguments
            self._emit(
                "response.function_call_arguments.delta",
                item_id=call.id,
                output_index=call.index,
                delta=arguments,
            )

    def _end(self) -> None:
        """``[DONE]``: every item done, then the whole response."""
        if not self._started:
            self._start(None)
        self._close_message(item_status(self._finish_reason))
        for call in self._calls.values():
            self._emit(
                "response.function_call_arguments.done",
                item_id=call.id,
                output_index=call.index,
                name=call.name,
                arguments=call.arguments,
            )
            item = self._call_item(call, "completed")
            self._emit("response.output_item.done", output_index=call.index, item=item)
        self.response["output"] = self._output("completed")
        finish(self.response, self._finish_reason, self._usage)
        kind = "response.incomplete" if self.response["status"] == "incomplete" else ""
        self._emit(kind or "response.completed", response=self.response)
        self.ended = True

    def _fail(self, error: Json) -> None:
        if not self._started:
            self._start(None)
        self.response["output"] = self._output("incomplete")
        self.response["status"] = "failed"
        code = "rate_limit_exceeded" if error.get("code") == "rate_limit_exceeded" else None
        self.response["error"] = {"code": code or "server_error", "message": error["message"]}
        self._emit("response.failed", response=self.response, error=error)
        self.ended = True

    def _output(self, open_status: str) -> list[Json]:
        """Every item as it stands; those still open get ``open_status``."""
        out = []
        for item in self._items:
            if isinstance(item, _Call):
                out.append(self._call_item(item, open_status))
            else:
                out.append(item.final or message_item(item.id, item.parts, open_status))
        return out

    @staticmethod
    def _call_item(call: _Call, status: str) -> Json:
        return call_item(call.id, call.call_id, call.name, call.arguments, status)


def _parse(event: bytes) -> tuple[bytes | None, bytes | None]:
    """(event name, data) of one SSE event; comments and other fields are ignored."""
    name: bytes | None = None
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return name, (b"\n".join(data) if data else None)


def _error(message: str) -> Json:
    return {"message": message, "type": "upstream_error", "param": None, "code": "upstream_error"}


def _error_of(raw: Any) -> Json:
    """The OpenAI error object in a failure event (a gateway error, or an upstream's)."""
    if isinstance(raw, str) and raw:
        return _error(raw)
    if not isinstance(raw, dict):
        return _error("the stream failed")
    message = raw.get("message")
    return {
        "message": message if isinstance(message, str) and message else "the stream failed",
        "type": raw.get("type") if isinstance(raw.get("type"), str) else "upstream_error",
        "param": raw.get("param") if isinstance(raw.get("param"), str) else None,
        "code": raw.get("code") if isinstance(raw.get("code"), str) else None,
    }
