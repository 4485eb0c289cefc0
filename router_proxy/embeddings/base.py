"""The Encoder interface: text in, L2-normalised float32 vectors out.

``encode`` is synchronous and batched (load time: examples, background, training data);
``embed`` is the hot path's one-prompt call. Backends implement ``_encode_batch`` only;
this class clips long texts, maps empty ones to the zero vector and normalises, so every
backend returns the same shape of answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from router_proxy.embeddings.calibration import Calibration

Vectors = NDArray[np.float32]


class Encoder(ABC):
    """One per process (see ``SharedEncoder``): shared by signals and selectors."""

    #: Recorded in artifacts so a selector trained with one encoder refuses another.
    name: str
    dim: int
    max_chars: int

    def __init__(self, name: str, dim: int, max_chars: int) -> None:
        self.name = name
        self.dim = dim
        self.max_chars = max_chars

    def clip(self, text: str) -> str:
        """The first ``max_chars`` characters; lone surrogates (valid in a Python str, not in
        UTF-8, which tokenizers refuse) become '?'."""
        text = text[: self.max_chars]
        return text.encode("utf-8", "replace").decode("utf-8")

    def encode(self, texts: Sequence[str]) -> Vectors:
        """One row per text, unit length; empty or blank texts get the zero vector (cosine
        0 with everything), never a model's guess about nothing."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            raw = self._encode_batch([self.clip(texts[i]) for i in keep])
            out[keep] = normalise(raw)
        return out

    async def embed(self, text: str) -> Vectors:
        """The hot path. Default: inline, for backends cheaper than a thread hop."""
        vector: Vectors = self.encode([text])[0]
        return vector

    @cached_property
    def calibration(self) -> Calibration:
        """This encoder's similarity scale, measured once (``build_encoder`` does it at load)."""
        from router_proxy.embeddings.calibration import Calibration

        return Calibration.measure(self)

    @abstractmethod
    def _encode_batch(self, texts: list[str]) -> NDArray[np.floating]:
        """Vectors for non-empty, clipped texts (any float dtype, any norm)."""

    def close(self) -> None:  # noqa: B027 - an optional hook: most backends hold nothing
        """Release threads or memory held by the backend."""


def normalise(vectors: NDArray[np.floating]) -> Vectors:
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: Vectors = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return unit
