"""The ``embeddings:`` section of the config: which encoder the process shares."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from router_proxy.config.base import StrictModel

Backend = Literal["static", "sentence-transformers"]


class EmbeddingsConfig(StrictModel):
    backend: Backend = Field(
        default="static",
        description="`static`: model2vec distilled from all-MiniLM-L6-v2, shipped in the "
        "package, ~1 ms a prompt, no torch. `sentence-transformers`: all-MiniLM-L6-v2 itself "
        "(needs the `transformer` extra), ~50-100x slower on CPU, run in a thread, micro-batched",
    )
    model: str | None = Field(
        default=None,
        description="a local model folder instead of the bundled one (a model2vec folder for "
        "`static`, a sentence-transformers folder for `sentence-transformers`)",
    )
    cache_size: int = Field(
        default=10_000, ge=0, description="prompts whose vectors are kept (LRU); 0 = no cache"
    )
    max_batch: int = Field(
        default=32, ge=1, description="most prompts one micro-batched encode call takes"
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="how long the first prompt of a micro-batch waits for others to join",
    )
    max_chars: int = Field(
        default=8_192,
        ge=16,
        description="prompts are cut to their first max_chars characters before encoding: "
        "bounds the hot path's cost (both models read only the first 256-512 tokens anyway)",
    )
    device: str = Field(
        default="cpu", description="torch device for `sentence-transformers` (e.g. cuda)"
    )
