"""``type: embedding``: fires on paraphrases of its examples, not on unrelated prompts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.resources import BuildContext, Resources
from router_proxy.signals.embedding import EmbeddingSignal, EmbeddingSignalConfig
from tests.support.signal_helpers import evaluate
from tests.test_embeddings_support import BACKENDS, encoder

MATH = [
    "solve this equation for x",
    "compute the derivative of this function",
    "prove that this statement holds for all n",
    "what is the integral of",
]
PARAPHRASES = [
    "Solve 3x + 7 = 22 for x.",
    "Find the derivative of x^2 * sin(x).",
    "Prove that the statement is true for every natural number n.",
    "What's the integral of 1/x?",
]
UNRELATED = [
    "Plan a three-day trip to Lisbon.",
    "Write a poem about the ocean at night.",
    "Who painted the Mona Lisa?",
    "How do I get rid of aphids on my roses?",
    "Recommend a good fantasy novel.",
]


def config(**kwargs: Any) -> EmbeddingSignalConfig:
    return EmbeddingSignalConfig.model_validate(
        {"name": "math", "type": "embedding", "examples": MATH, **kwargs}
    )


def signal(backend: str = "static", **kwargs: Any) -> EmbeddingSignal:
    return EmbeddingSignal(config(**kwargs), encoder(backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt", PARAPHRASES)
def test_fires_on_paraphrases(backend: str, prompt: str) -> None:
    result = evaluate(signal(backend), prompt)
    assert result.fired, result.detail
    assert isinstance(result.value, float)
    assert result.value >= 0.6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt", UNRELATED)
def test_silent_on_unrelated_prompts(backend: str, prompt: str) -> None:
    result = evaluate(signal(backend), prompt)
    assert not result.fired, result.detail
    assert isinstance(result.value, float)
    assert result.value < 0.6


def test_detail_names_the_closest_example_and_the_score() -> None:
    result = evaluate(signal(), "Find the derivative of cos(3x).")
    assert "'compute the derivative of this function'" in result.detail
    assert f"{result.value:.2f}" in result.detail


def test_threshold_and_mean_top_k() -> None:
    prompt = "Solve 3x + 7 = 22 for x."
    best = evaluate(signal(), prompt)
    assert isinstance(best.value, float)
    assert not evaluate(signal(threshold=best.value + 0.01), prompt).fired
    mean = evaluate(signal(aggregate="mean_top_k", top_k=3), prompt)
    assert isinstance(mean.value, float)
    assert mean.value < best.value


def test_no_text_is_no_match() -> None:
    for messages in ([{"role": "user", "content": ""}], [{"role": "user", "content": None}]):
        result = evaluate(signal(), messages)
        assert (result.fired, result.value) == (False, None)
        assert "no text" in result.detail


def test_content_parts_are_read() -> None:
    parts = [
        {"type": "text", "text": "Solve 3x + 7 = 22"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "for x."},
    ]
    assert evaluate(signal(), [{"role": "user", "content": parts}]).fired


def test_scope() -> None:
    messages = [
        {"role": "system", "content": "Prove that the statement holds for all n."},
        {"role": "user", "content": "Who painted the Mona Lisa?"},
    ]
    assert not evaluate(signal(), messages).fired
    assert evaluate(signal(scope="all"), messages).fired


@pytest.mark.parametrize(
    "prompt", ["日本語で微分を説明して", "😀🎉", "\ud800", "שלום", "x" * 2_000_000]
)
def test_odd_prompts_never_fail(prompt: str) -> None:
    result = evaluate(signal(), prompt)
    assert isinstance(result.value, float)


def test_long_few_shot_prompt() -> None:
    shots = "\n\n".join(
        f"Q: solve {i}x + {i + 1} = {i + 9} for x\nA: x = {8 / i:.2f}" for i in range(1, 80)
    )
    assert evaluate(signal(), shots + "\n\nQ: solve 2x = 10 for x\nA:").fired


class CountingEncoder(Encoder):
    """A real encoder that counts its calls: examples must be embedded once, at build."""

    def __init__(self, inner: Encoder) -> None:
        super().__init__(inner.name, inner.dim, inner.max_chars)
        self.inner = inner
        self.encoded: list[int] = []
        self.embedded = 0
        self.__dict__["calibration"] = inner.calibration

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        self.encoded.append(len(texts))
        return self.inner.encode(texts)

    async def embed(self, text: str) -> np.ndarray:
        self.embedded += 1
        return await self.inner.embed(text)


def test_examples_are_embedded_once_at_build() -> None:
    counting = CountingEncoder(encoder())
    built = EmbeddingSignal(config(), counting)
    assert counting.encoded == [len(MATH)]
    for prompt in PARAPHRASES:
        evaluate(built, prompt)
    assert counting.encoded == [len(MATH)]
    assert counting.embedded == len(PARAPHRASES)


def test_build_takes_the_shared_encoder() -> None:
    shared = SharedEncoder(build=lambda _: encoder())
    built = EmbeddingSignal.build(config(), BuildContext(Resources(shared)))
    assert built.encoder is encoder()
    assert shared.loaded
    assert EmbeddingSignal.cost_rank > 10  # after keyword signals


@pytest.mark.parametrize(
    "bad",
    [{"examples": []}, {"examples": ["  "]}, {"top_k": 0}, {"aggregate": "min"}, {"topk": 3}],
)
def test_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        config(**bad)


def test_is_a_boolean_signal_in_rules() -> None:
    assert config().accepts_value(True) is not None  # `{math: ...}` is refused: write `math`
