"""The semantic cache's index: per tenant and context (``key.context_key``: the request
without its last user turn), the last user turns whose answers are stored, as vectors of
the shared encoder; ``search`` returns the closest ones.

A context with few prompts (most: one conversation, one question) is an exact scan of a
small matrix; past ``SMALL_CONTEXT`` prompts it moves to an HNSW graph from usearch
(benchmarks/cache/README.md: why usearch, latency and memory at 10k and 1M prompts).
Entries are labels of stored answers: an answer that expired or was purged is found
missing in the store, and the label is dropped then. Bounded per context
(``cache.semantic_max_entries``, oldest out) and in contexts (least recently used out).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float32]
SMALL_CONTEXT = 256  # exact scan up to here: a 256 x 256 product is a few microseconds
MAX_CONTEXTS = 100_000
# Half-precision vectors (the cosines need no more), 16 links a node, default search depth.
HNSW_OPTIONS: dict[str, Any] = {"metric": "ip", "dtype": "f16", "connectivity": 16}

if TYPE_CHECKING:
    from usearch.index import Index


def new_hnsw(ndim: int) -> Index:
    # Imported on first use: usearch imports tqdm, which a server that caches nothing
    # semantically should not load (tests/test_imports.py).
    from usearch.index import Index

    return Index(ndim=ndim, **HNSW_OPTIONS)


def vector_to_bytes(vector: Vector) -> bytes:
    """Half precision, as the index keeps it: 512 bytes for the static encoder."""
    return vector.astype(np.float16).tobytes()


def vector_from_bytes(data: bytes, ndim: int) -> Vector | None:
    if len(data) != ndim * 2:
        return None  # another encoder's, or not a vector: never matched
    vector: Vector = np.frombuffer(data, dtype=np.float16).astype(np.float32)
    return vector


@dataclass(frozen=True, slots=True)
class Candidate:
    digest: str  # the stored answer's key
    cosine: float


@dataclass(eq=False)
class ContextIndex:
    """One tenant's prompts in one context."""

    ndim: int
    capacity: int
    # label -> answer key, oldest first (labels only grow; dicts keep insertion order)
    digests: dict[int, str] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # answer key -> label
    next_label: int = 0
    small: Vector | None = None  # rows = labels in `small_labels` order
    # A tuple, not a list: the garbage collector stops tracking tuples of ints, and there
    # may be a hundred thousand small contexts.
    small_labels: tuple[int, ...] = ()
    hnsw: Index | None = None
    cursor: str = "0-0"  # how far the store's journal of this context has been read

    def __len__(self) -> int:
        return len(self.digests)

    def add(self, digest: str, vector: Vector) -> None:
        if digest in self.labels:
            return
        while len(self.digests) >= self.capacity:
            self.remove(next(iter(self.digests.values())))
        label, self.next_label = self.next_label, self.next_label + 1
        self.digests[label], self.labels[digest] = digest, label
        if self.hnsw is not None:
            self.hnsw.add(label, vector)
            return
        row = vector.reshape(1, -1).astype(np.float32)
        self.small = row if self.small is None else np.vstack((self.small, row))
        self.small_labels += (label,)
        if len(self.small_labels) > SMALL_CONTEXT:
            self.hnsw = new_hnsw(self.ndim)
            self.hnsw.add(np.array(self.small_labels), self.small)
            self.small, self.small_labels = None, ()

    def remove(self, digest: str) -> None:
        label = self.labels.pop(digest, None)
        if label is None:
            return
        del self.digests[label]
        if self.hnsw is not None:
            self.hnsw.remove(label)
        elif self.small is not None:
            row = self.small_labels.index(label)
            self.small = np.delete(self.small, row, axis=0)
            self.small_labels = self.small_labels[:row] + self.small_labels[row + 1 :]

    def search(self, vector: Vector, count: int) -> list[Candidate]:
        if self.hnsw is not None:
            matches = self.hnsw.search(vector, count)
            return [
                Candidate(self.digests[int(label)], 1.0 - float(distance))
                for label, distance in zip(matches.keys, matches.distances, strict=True)
                if int(label) in self.digests
            ]
        if self.small is None or not self.small_labels:
            return []
        cosines = self.small @ vector
        best = np.argsort(-cosines)[:count]
        return [Candidate(self.digests[self.small_labels[i]], float(cosines[i])) for i in best]


class SemanticIndex:
    """Every context's index, bounded in prompts in all (``capacity``: least recently
    used contexts go first; a context that alone outgrows it drops its oldest prompts) and
    in contexts."""

    def __init__(self, ndim: int, capacity: int, max_contexts: int = MAX_CONTEXTS) -> None:
        self.ndim = ndim
        self.capacity = capacity
        self.max_contexts = max_contexts
        self.entries = 0
        self._contexts: OrderedDict[str, ContextIndex] = OrderedDict()

    def __len__(self) -> int:
        return self.entries

    def add(self, context: str, digest: str, vector: Vector) -> None:
        found = self._contexts.get(context)
        if found is None:
            found = self._contexts[context] = ContextIndex(self.ndim, self.capacity)
        self._contexts.move_to_end(context)
        before = len(found)
        found.add(digest, vector)
        self.entries += len(found) - before
        while self.entries > self.capacity or len(self._contexts) > self.max_contexts:
            _, oldest = next(iter(self._contexts.items()))
            if oldest is found:
                break  # alone over the bound: it drops its own oldest (ContextIndex.add)
            self._drop_oldest_context()

    def search(self, context: str, vector: Vector, count: int = 4) -> list[Candidate]:
        found = self._contexts.get(context)
        if found is None:
            return []
        self._contexts.move_to_end(context)
        return found.search(vector, count)

    def cursor(self, context: str) -> str:
        found = self._contexts.get(context)
        return found.cursor if found is not None else "0-0"

    def learn(self, context: str, journal: list[tuple[str, str, bytes]]) -> None:
        """Prompts other replicas stored (``CacheStore.shared_prompts``), in order."""
        for _position, digest, data in journal:
            vector = vector_from_bytes(data, self.ndim)
            if vector is not None:
                self.add(context, digest, vector)
        found = self._contexts.get(context)
        if found is not None and journal:
            found.cursor = journal[-1][0]

    def forget(self, context: str, digest: str) -> None:
        """An answer the store no longer has."""
        found = self._contexts.get(context)
        if found is not None:
            before = len(found)
            found.remove(digest)
            self.entries -= before - len(found)
            if not found:
                del self._contexts[context]

    def clear(self) -> None:
        self._contexts.clear()
        self.entries = 0

    def _drop_oldest_context(self) -> None:
        _, dropped = self._contexts.popitem(last=False)
        self.entries -= len(dropped)
