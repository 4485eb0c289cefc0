"""Encoders: offline loading, the vector contract, clipping, cache, micro-batching, sharing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.batcher import MicroBatcher
from router_proxy.embeddings.cache import CachedEncoder
from router_proxy.embeddings.calibration import load_background
from router_proxy.embeddings.config import Backend, EmbeddingsConfig
from router_proxy.embeddings.registry import ENCODER_BACKENDS, build_encoder
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.embeddings.transformer import SentenceTransformerEncoder
from tests.test_embeddings_support import BACKENDS, encoder, needs_transformer, run

UNICODE = [
    "日本語のテキストです",
    "שלום עולם",
    "e\u0301te\u0301 à Paris",
    "😀🎉",
    "\ud800 lone",
    "\x00",
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_vectors_are_unit_float32_rows(backend: str) -> None:
    enc = encoder(backend)
    vectors = enc.encode(["How do I sort a list in Python?", "Bake bread", *UNICODE])
    assert vectors.dtype == np.float32
    assert vectors.shape == (2 + len(UNICODE), enc.dim)
    norms = np.linalg.norm(vectors, axis=1)
    # Text the model has no tokens for (emoji, NUL for the static model) gets the zero vector.
    assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))
    assert norms[0] == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_embed_matches_encode(backend: str) -> None:
    enc = encoder(backend)
    text = "Explain the offside rule in football"
    assert np.allclose(run(enc.embed(text)), enc.encode([text])[0], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_blank_text_is_the_zero_vector(backend: str) -> None:
    vectors = encoder(backend).encode(["", "  \n\t "])
    assert not vectors.any()


def test_names_and_dims() -> None:
    assert encoder().name == "static:minilm-l6-v2-m2v-256"
    assert encoder().dim == 256


@needs_transformer
def test_transformer_name_and_dim() -> None:
    assert encoder("sentence-transformers").name == "st:all-MiniLM-L6-v2"
    assert encoder("sentence-transformers").dim == 384


def test_long_prompts_are_clipped_and_cheap() -> None:
    enc = encoder()
    head = "Question: what is the capital of France? Answer: Paris. " * 200
    huge = head + "zebra " * 200_000  # ~1.2 MB
    started = time.perf_counter()
    vector = run(enc.embed(huge))
    assert time.perf_counter() - started < 0.5
    assert np.allclose(vector, enc.encode([head[: enc.max_chars]])[0], atol=1e-5)


def test_static_path_is_offline_and_imports_no_torch() -> None:
    code = (
        "import asyncio, sys\n"
        "from router_proxy.embeddings.config import EmbeddingsConfig\n"
        "from router_proxy.embeddings.registry import build_encoder\n"
        "from router_proxy.signals.embedding import EmbeddingSignal\n"
        "from router_proxy.signals.domain import DomainSignal\n"
        "enc = build_encoder(EmbeddingsConfig())\n"
        "asyncio.run(enc.embed('hello world'))\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    # Any attempt to reach the network fails at once: nothing listens on port 9.
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_missing_model_folder_is_an_error_not_a_download() -> None:
    with pytest.raises(FileNotFoundError, match="no model2vec model"):
        build_encoder(EmbeddingsConfig(model="/nonexistent/model"))


def test_config_contract() -> None:
    assert set(ENCODER_BACKENDS) == set(get_args(Backend))
    assert EmbeddingsConfig().backend == "static"
    with pytest.raises(ValidationError):
        EmbeddingsConfig(backend="word2vec")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        EmbeddingsConfig(max_batch=0)
    with pytest.raises(ValidationError):
        EmbeddingsConfig.model_validate({"cache": 10})  # typo: refused, not ignored


def test_background_corpus_shape() -> None:
    topics, prompts = load_background()
    assert len(prompts) == 200
    assert len(set(topics)) == 40
    assert len(set(prompts)) == 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_calibration_is_measured_at_load(backend: str) -> None:
    calibration = encoder(backend).calibration
    assert calibration.related > calibration.unrelated
    assert calibration.background.shape == (200, encoder(backend).dim)


def test_cache_returns_the_same_vector_and_evicts_least_recent() -> None:
    base = encoder()
    assert isinstance(base, CachedEncoder)
    cached = CachedEncoder(base.inner, size=2)
    first = run(cached.embed("alpha question"))
    assert (cached.hits, cached.misses) == (0, 1)
    assert run(cached.embed("alpha question")) is first
    assert (cached.hits, cached.misses) == (1, 1)
    assert not first.flags.writeable  # shared by every caller: nobody may change it
    run(cached.embed("beta question"))
    run(cached.embed("alpha question"))  # alpha is now the most recent
    run(cached.embed("gamma question"))  # evicts beta
    assert len(cached) == 2
    misses = cached.misses
    run(cached.embed("alpha question"))
    assert cached.misses == misses
    run(cached.embed("beta question"))
    assert cached.misses == misses + 1


def test_cache_size_zero_means_no_cache() -> None:
    enc = build_encoder(EmbeddingsConfig(cache_size=0))
    assert not isinstance(enc, CachedEncoder)


class _Recorder:
    """Wraps a real encode function and records the batches it was given."""

    def __init__(self, enc: Encoder, fail: bool = False) -> None:
        self.enc = enc
        self.batches: list[list[str]] = []
        self.fail = fail

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(texts)
        if self.fail:
            raise RuntimeError("encoder broke")
        return self.enc.encode(texts)


def _gather(batcher: MicroBatcher, texts: list[str]) -> list[np.ndarray]:
    async def main() -> list[np.ndarray]:
        return list(await asyncio.gather(*(batcher.submit(t) for t in texts)))

    return asyncio.run(main())


def test_batcher_coalesces_and_respects_max_batch() -> None:
    record = _Recorder(encoder())
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(record, pool, max_batch=4, max_wait_s=0.002)
        texts = [f"question number {i}" for i in range(10)]
        vectors = _gather(batcher, texts)
    assert [len(b) for b in record.batches] == [4, 4, 2]
    assert batcher.calls == 3
    assert np.allclose(np.stack(vectors), encoder().encode(texts), atol=1e-6)


def test_batcher_encodes_identical_texts_once() -> None:
    record = _Recorder(encoder())
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(record, pool, max_batch=32, max_wait_s=0.005)
        vectors = _gather(batcher, ["same", "same", "other", "same"])
    assert record.batches == [["same", "other"]]
    assert np.array_equal(vectors[0], vectors[3])


def test_batcher_hands_errors_to_every_waiter_and_recovers() -> None:
    record = _Recorder(encoder(), fail=True)
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(record, pool, max_batch=8, max_wait_s=0.002)

        async def main() -> list[object]:
            return list(
                await asyncio.gather(*(batcher.submit(t) for t in "abc"), return_exceptions=True)
            )

        results = asyncio.run(main())
        assert all(isinstance(r, RuntimeError) for r in results)
        record.fail = False
        assert _gather(batcher, ["works again"])[0].shape == (encoder().dim,)


@needs_transformer
def test_transformer_micro_batches_concurrent_requests() -> None:
    enc = encoder("sentence-transformers")
    assert isinstance(enc, CachedEncoder)
    inner = enc.inner
    assert isinstance(inner, SentenceTransformerEncoder)
    texts = [f"concurrent prompt {i} about topic {i % 3}" for i in range(20)]
    before = inner.batcher.calls

    async def main() -> list[np.ndarray]:
        return list(await asyncio.gather(*(inner.embed(t) for t in texts)))

    vectors = asyncio.run(main())
    # 20 concurrent requests, max_batch 32: one encode call, not twenty.
    assert inner.batcher.calls - before == 1
    assert np.allclose(np.stack(vectors), inner.encode(texts), atol=1e-5)


@needs_transformer
def test_transformer_embed_runs_off_the_event_loop() -> None:
    inner = encoder("sentence-transformers")
    assert isinstance(inner, CachedEncoder)
    loop_thread: list[str] = []
    original = inner.inner._encode_batch

    def spy(texts: list[str]) -> np.ndarray:
        loop_thread.append(threading.current_thread().name)
        return original(texts)

    inner.inner._encode_batch = spy  # type: ignore[method-assign]
    try:
        run(inner.inner.embed("where does this run?"))
    finally:
        del inner.inner._encode_batch
    assert loop_thread
    assert loop_thread[0].startswith("encoder")


def test_shared_encoder_builds_once_on_first_use() -> None:
    builds: list[EmbeddingsConfig] = []

    def build(config: EmbeddingsConfig) -> Encoder:
        builds.append(config)
        time.sleep(0.05)  # let the racing threads meet inside the lock
        return encoder()

    shared = SharedEncoder(EmbeddingsConfig(), build)
    assert not shared.loaded
    assert builds == []
    threads = [threading.Thread(target=shared.get) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert shared.loaded
    assert shared.get() is encoder()
    assert shared.for_config(EmbeddingsConfig()) is shared
    other = shared.for_config(EmbeddingsConfig(cache_size=5))
    assert other is not shared
    assert not other.loaded


def test_batcher_survives_a_loop_that_closed_mid_batch() -> None:
    gate = threading.Event()
    record = _Recorder(encoder())

    def slow(texts: list[str]) -> np.ndarray:
        gate.wait(5)
        return record(texts)

    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(slow, pool, max_batch=1, max_wait_s=0)

        async def give_up() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(batcher.submit("abandoned"), 0.05)

        asyncio.run(give_up())  # its loop closes while the batch still runs
        gate.set()
        time.sleep(0.1)
        assert not batcher._busy  # recovered: the next loop batches again
        assert _gather(batcher, ["next one"])[0].shape == (encoder().dim,)
