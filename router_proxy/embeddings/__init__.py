"""Text embeddings shared by signals and selectors.

config.py       EmbeddingsConfig: the ``embeddings:`` section
base.py         Encoder: name, dim, encode (batched, sync), embed (hot path, async)
static.py       backend ``static`` (default): model2vec, bundled under models/
transformer.py  backend ``sentence-transformers``: all-MiniLM-L6-v2, micro-batched
batcher.py      MicroBatcher: concurrent embed calls -> one encode in a thread
cache.py        CachedEncoder: LRU by text in front of any backend
calibration.py  calibrated similarity (one threshold scale for every encoder)
registry.py     ENCODER_BACKENDS and build_encoder
shared.py       SharedEncoder: one encoder per process, built on first use
"""
