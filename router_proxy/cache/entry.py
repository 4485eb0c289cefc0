"""One stored answer and its bytes in the store.

A whole answer keeps the upstream's body (the endpoint's OpenAI JSON, or the client's own
wire format when a provider answered natively) and is rendered for the request's surface
on a hit like a fresh one. A stream keeps the relayed events as they went to the surface
(canonical chat chunks, usage and ``[DONE]`` included, or native events), so a hit replays
them through the same translation. Encoded as one JSON line of metadata, then the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from router_proxy.protocol import Usage

Kind = Literal["whole", "stream"]
VERSION = 1


class CorruptEntryError(ValueError):
    """Bytes in the store that are not an entry of this version (treated as a miss)."""


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    kind: Kind
    body: bytes
    model: str  # the model that answered: a hit saves its price
    usage: Usage | None
    native: bool = False  # the body is in the client's own wire format
    finish_reason: str | None = None
    prompt: str = ""  # the last user turn (semantic entries): what a paraphrase matched

    def encode(self) -> bytes:
        usage = [self.usage.prompt_tokens, self.usage.completion_tokens] if self.usage else None
        meta = {
            "v": VERSION,
            "kind": self.kind,
            "model": self.model,
            "usage": usage,
            "native": self.native,
            "finish": self.finish_reason,
            "prompt": self.prompt,
        }
        return orjson.dumps(meta) + b"\n" + self.body

    @classmethod
    def decode(cls, data: bytes) -> CachedAnswer:
        head, newline, body = data.partition(b"\n")
        try:
            meta = orjson.loads(head)
            if not newline or meta.get("v") != VERSION:
                raise CorruptEntryError("not a cache entry of this version")
            usage = meta["usage"]
            return cls(
                kind=meta["kind"],
                body=body,
                model=meta["model"],
                usage=Usage(prompt_tokens=usage[0], completion_tokens=usage[1]) if usage else None,
                native=bool(meta["native"]),
                finish_reason=meta["finish"],
                prompt=meta.get("prompt", ""),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise CorruptEntryError(str(exc)) from exc
