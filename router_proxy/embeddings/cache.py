"""A bounded LRU cache in front of any encoder: a repeated prompt costs one hash.

Keys are a 16-byte BLAKE2b digest of the (clipped) text, not the text itself, so 10,000
cached few-shot prompts cost ~10,000 vectors of memory, not ~10,000 prompts as well.
Cached vectors are read-only: every caller gets the same array.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from router_proxy.embeddings.base import Encoder, Vectors


class CachedEncoder(Encoder):
    def __init__(self, inner: Encoder, size: int) -> None:
        super().__init__(inner.name, inner.dim, inner.max_chars)
        self.inner = inner
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, Vectors] = OrderedDict()

    def encode(self, texts: Sequence[str]) -> Vectors:
        return self.inner.encode(texts)  # batch work at load time: not worth caching

    async def embed(self, text: str) -> Vectors:
        text = self.clip(text)
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return found
        self.misses += 1
        vector = np.array(await self.inner.embed(text), dtype=np.float32)
        vector.setflags(write=False)
        self._entries[key] = vector
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return vector

    def __len__(self) -> int:
        return len(self._entries)

    def _encode_batch(self, texts: list[str]) -> NDArray[np.floating]:
        return self.inner.encode(texts)

    def close(self) -> None:
        self.inner.close()
