"""Semantic matching: a request's last user turn against the prompts stored in the same
tenant and context, on the shared encoder's calibrated scale, checked by the meaning guard.

    score = (cosine - unrelated) / (related - unrelated)     (embeddings/calibration.py)

A candidate at or above the decision's threshold whose stored prompt is the same question
(``guard.same_question``) is a hit; the threshold's default and the guard's precision
come from benchmarks/cache/ (false hits on near-misses, hit rate on paraphrases).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from router_proxy.cache.entry import CachedAnswer
from router_proxy.cache.guard import same_question
from router_proxy.cache.semantic import SemanticIndex, Vector
from router_proxy.embeddings.base import Encoder

# Fetches a stored answer by its key (None: gone, expired or purged).
Fetch = Callable[[str], Awaitable[CachedAnswer | None]]
CANDIDATES = 4  # nearest prompts checked per lookup


class SemanticMatcher:
    def __init__(self, encoder: Encoder, index: SemanticIndex) -> None:
        self.encoder = encoder
        self.index = index
        calibration = encoder.calibration
        self._offset, self._scale = calibration.unrelated, calibration.scale

    async def embed(self, prompt: str) -> Vector:
        return await self.encoder.embed(prompt)

    def score(self, cosine: float) -> float:
        return (cosine - self._offset) / self._scale

    async def find(
        self, context: str, prompt: str, vector: Vector, threshold: float, fetch: Fetch
    ) -> tuple[str, CachedAnswer] | None:
        """(answer key, answer) of the closest stored prompt that is the same question."""
        for candidate in self.index.search(context, vector, CANDIDATES):
            if self.score(candidate.cosine) < threshold:
                break  # best first: the rest are further
            answer = await fetch(candidate.digest)
            if answer is None:
                self.index.forget(context, candidate.digest)
            elif same_question(answer.prompt, prompt):
                return candidate.digest, answer
        return None

    def add(self, context: str, digest: str, vector: Vector) -> None:
        self.index.add(context, digest, vector)
