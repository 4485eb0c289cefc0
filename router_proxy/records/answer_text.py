"""An answer's text from what the gateway relayed: a whole answer's JSON body, or a
stream's SSE blocks, in any wire format the gateway speaks. Run in the records writer
thread (never on the event loop), only for records that keep content.

Text parts are joined; an answer with no text (tool calls only, embeddings) is None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from router_proxy.translate.common import SSEReader

Json = dict[str, Any]


def _chat(data: Json) -> Iterator[str]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return
    choice = choices[0]  # the first choice: the one a client reads
    message = choice.get("message") or choice.get("delta") or {}
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        yield content
    yield from _parts(content)
    if isinstance(choice.get("text"), str):  # a text completion
        yield choice["text"]


def _parts(content: Any) -> Iterator[str]:
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def _anthropic(data: Json) -> Iterator[str]:
    if data.get("type") == "message":
        yield from _parts(data.get("content"))
    elif data.get("type") == "content_block_delta":
        delta = data.get("delta") or {}
        if isinstance(delta.get("text"), str):
            yield delta["text"]


def _responses(data: Json) -> Iterator[str]:
    if data.get("type") == "response.output_text.delta" and isinstance(data.get("delta"), str):
        yield data["delta"]
    elif data.get("object") == "response":
        for item in data.get("output") or ():
            if isinstance(item, dict) and item.get("type") == "message":
                yield from _parts(item.get("content"))


_READERS: dict[str, Callable[[Json], Iterator[str]]] = {
    "chat": _chat,
    "completions": _chat,
    "anthropic.messages": _anthropic,
    "openai.responses": _responses,
}


def answer_text(parts: Iterable[bytes], wire_format: str, streamed: bool) -> str | None:
    """The text of the answer relayed as ``parts`` in ``wire_format``."""
    read = _READERS.get(wire_format)
    if read is None:  # embeddings: no text
        return None
    texts: list[str] = []
    for data in _events(parts) if streamed else [b"".join(parts)]:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue  # [DONE], a comment
        if isinstance(value, dict):
            texts.extend(read(value))
    return "".join(texts) if texts else None


def _events(parts: Iterable[bytes]) -> Iterator[bytes]:
    reader = SSEReader()
    for part in parts:
        for _, data in reader.feed(part):
            yield data
    for _, data in reader.flush():
        yield data
