"""One encoder per process, built on first use.

The runtime owns one ``SharedEncoder`` across config reloads and hands it to everything
built from a config (signals now, selectors later). Nothing loads until someone calls
``get``: a policy without embedding signals never loads a model. A reload whose
``embeddings:`` section changed gets a new holder from ``for_config``; an unchanged one
keeps the loaded model (and its cache).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder


class SharedEncoder:
    def __init__(
        self,
        config: EmbeddingsConfig | None = None,
        build: Callable[[EmbeddingsConfig], Encoder] = build_encoder,
    ) -> None:
        self.config = config or EmbeddingsConfig()
        self._build = build
        self._encoder: Encoder | None = None
        # Configs are built off the event loop, possibly two at once (a reload during
        # start-up): the lock makes sure the model loads once.
        self._lock = threading.Lock()

    def get(self) -> Encoder:
        encoder = self._encoder
        if encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = self._build(self.config)
                encoder = self._encoder
        return encoder

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def for_config(self, config: EmbeddingsConfig) -> SharedEncoder:
        """This holder if ``config`` is the same, else a new one (the old one should then
        be closed once nothing uses it)."""
        return self if config == self.config else SharedEncoder(config, self._build)

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
