"""The mock's answers beyond chat: legacy text completions (the chat reply to the prompt,
as a ``text_completion``) and embeddings (a deterministic unit vector per input, so the
same text always embeds the same; nothing semantic about it)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np

from router_proxy.protocol import Usage
from router_proxy.providers.base import UpstreamCall
from router_proxy.providers.mock_content import estimate_tokens

DEFAULT_DIMENSIONS = 64
MAX_DIMENSIONS = 4096
Json = dict[str, Any]


def as_chat(call: UpstreamCall) -> Json:
    """A text completion's body as the chat body the mock answers: the prompt as the
    user's turn, the parameters that shape the reply kept."""
    prompt = call.body.get("prompt")
    text = (
        prompt
        if isinstance(prompt, str)
        else "\n".join(p for p in prompt or () if isinstance(p, str))
    )
    kept = {k: call.body[k] for k in ("max_tokens", "n", "stream_options") if k in call.body}
    if kept.get("max_tokens") == 0:  # allowed here (usage only); the reply is cut to nothing
        kept["max_tokens"] = 1
    return {"model": call.body.get("model"), "messages": [{"role": "user", "content": text}]} | kept


def text_choice(index: int, text: str, finish_reason: str | None) -> Json:
    return {"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}


def embeddings(call: UpstreamCall) -> tuple[Json, Usage]:
    raw = call.body.get("input")
    inputs = [raw] if isinstance(raw, str) else list(raw or ())
    size = min(int(call.body.get("dimensions") or DEFAULT_DIMENSIONS), MAX_DIMENSIONS)
    as_base64 = call.body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        vector = _vector(str(item), size)
        embedding: Any = (
            base64.b64encode(vector.tobytes()).decode() if as_base64 else vector.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(estimate_tokens(str(item)) for item in inputs)
    usage = Usage(prompt_tokens=tokens, completion_tokens=0)
    payload = {
        "object": "list",
        "data": data,
        "model": call.upstream_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return payload, usage


def _vector(text: str, size: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    vector = np.random.default_rng(seed).standard_normal(size).astype(np.float32)
    return vector / np.float32(np.linalg.norm(vector) or 1.0)
