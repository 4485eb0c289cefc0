"""Encoder backends by their ``embeddings.backend`` name, and ``build_encoder``.

Adding a backend is one module with an ``Encoder`` subclass plus a line here. Backend
modules import their heavy libraries inside ``load``, so importing this registry costs
nothing and the static path never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.cache import CachedEncoder
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.static import BUNDLED_MODEL, StaticEncoder
from router_proxy.embeddings.transformer import NAME as ST_NAME
from router_proxy.embeddings.transformer import SentenceTransformerEncoder

EncoderFactory = Callable[[EmbeddingsConfig], Encoder]

ENCODER_BACKENDS: dict[str, EncoderFactory] = {
    "static": StaticEncoder.load,
    "sentence-transformers": SentenceTransformerEncoder.load,
}


def build_encoder(config: EmbeddingsConfig) -> Encoder:
    """Load the configured backend, put the cache in front and measure its calibration
    now (slow work, all at load time: call it off the event loop)."""
    encoder = ENCODER_BACKENDS[config.backend](config)
    if config.cache_size:
        encoder = CachedEncoder(encoder, config.cache_size)
    encoder.calibration  # noqa: B018 - measured at load, not on the first request
    return encoder


def encoder_name(config: EmbeddingsConfig) -> str:
    """The ``Encoder.name`` that ``config`` will load, known without loading it (config
    checks compare it with the encoder an artifact was trained with)."""
    local = Path(config.model).name if config.model else None
    if config.backend == "static":
        return f"static:{local or BUNDLED_MODEL}"
    return f"st:{local}" if local else ST_NAME
