"""Calibration: one threshold means the same under the static and the transformer encoder.

Four topic signals score 52 prompts (8 on each topic, 20 on none): 208 decisions per
encoder. Raw cosines do not transfer between encoders (MiniLM's best raw threshold fires
on most prompts under the static model); calibrated scores do.
"""

from __future__ import annotations

import numpy as np
import pytest

from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.calibration import Aggregate, ExampleIndex, aggregate
from router_proxy.signals.embedding import EmbeddingSignalConfig
from tests.test_embeddings_support import encoder, needs_transformer

SIGNALS = {
    "math": [
        "solve this equation for x",
        "compute the derivative of this function",
        "prove that this statement holds for all n",
        "what is the integral of",
        "simplify this algebraic expression",
    ],
    "law": [
        "is this contract legally binding",
        "can my landlord evict me",
        "what are my rights as an employee if I am fired",
        "do I need a lawyer to sue someone",
        "is it legal to record a phone call",
    ],
    "code": [
        "fix this bug in my python code",
        "write a function that sorts a list",
        "why does my program crash with a null pointer exception",
        "how do I use async await in javascript",
        "refactor this class to be more readable",
    ],
    "cooking": [
        "give me a recipe for dinner",
        "how long do I cook pasta",
        "what can I make with chicken and rice",
        "how do I make a sauce thicker",
        "vegetarian meal ideas for the week",
    ],
}
ON_TOPIC = {
    "math": [
        "Find all real roots of x^3 - 6x^2 + 11x - 6 = 0.",
        "What is the limit of sin(x)/x as x goes to zero?",
        "Show that the sum of the first n odd numbers is n squared.",
        "Calculate the area under y = x^2 between 0 and 3.",
        "Solve the system 2x + y = 5 and x - y = 1.",
        "Differentiate e^(3x) * cos(x).",
        "What is 15% of 240?",
        "Prove there are infinitely many primes.",
    ],
    "law": [
        "My employer fired me without notice, is that legal?",
        "Can I break my apartment lease early without penalty?",
        "What happens if I sign an NDA and then break it?",
        "How do I file a small claims lawsuit against a contractor?",
        "Is a handwritten will valid?",
        "Can my neighbour legally cut branches of my tree that hang over?",
        "Do I have to pay rent if my landlord refuses to fix the heating?",
        "Is it legal to fire someone for being pregnant?",
    ],
    "code": [
        "My Java program throws a NullPointerException on line 42, how do I fix it?",
        "Write a Rust function that reverses a string.",
        "How do I merge two dictionaries in Python?",
        "Why is my C++ loop never terminating?",
        "Implement binary search in Go.",
        "What does this regex do: ^[a-z]+\\d*$",
        "How do I mock a database call in a unit test?",
        "Convert this callback-based Node.js code to promises.",
    ],
    "cooking": [
        "How do I make fluffy pancakes?",
        "What's a quick weeknight dinner with salmon?",
        "How do I stop rice from getting sticky?",
        "Can I freeze homemade soup?",
        "Suggest a vegan lasagna recipe.",
        "How much salt goes in pasta water?",
        "What spices go well with roasted carrots?",
        "How do I caramelize onions properly?",
    ],
}
OFF_TOPIC = [
    "What is a good name for a golden retriever puppy?",
    "Plan a three-day trip to Lisbon.",
    "Write a poem about the ocean at night.",
    "What's the weather usually like in Iceland in June?",
    "Recommend a good fantasy novel.",
    "Who painted the Mona Lisa?",
    "hello",
    "Wie spät ist es in Tokio?",
    "Tell me about the history of the Ottoman Empire.",
    "How do I improve my running pace?",
    "What's the best smartphone under 500 dollars?",
    "Explain how vaccines train the immune system.",
    "Write a thank-you note to my teacher.",
    "Why do cats purr?",
    "How does the stock market work?",
    "What should I pack for a camping trip?",
    "Translate 'thank you very much' into Italian.",
    "How do airplanes stay in the air?",
    "Give me tips for public speaking.",
    "What is the meaning of life?",
]
PROMPTS = [p for prompts in ON_TOPIC.values() for p in prompts] + OFF_TOPIC
TOPIC = [t for t, prompts in ON_TOPIC.items() for _ in prompts] + [None] * len(OFF_TOPIC)
TRUTH = np.array([topic == signal for signal in SIGNALS for topic in TOPIC])
THRESHOLD = EmbeddingSignalConfig.model_fields["threshold"].default  # the documented default


def scores(enc: Encoder, how: Aggregate) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated, raw) score of every (signal, prompt) pair, signal-major."""
    vectors = enc.encode(PROMPTS)
    calibrated, raw = [], []
    for name, examples in SIGNALS.items():
        index = ExampleIndex(enc, {name: examples}, how, 3)
        calibrated += [index.match(v)[0].score for v in vectors]
        raw += list(aggregate(vectors @ index.vectors.T, how, 3))
    return np.array(calibrated), np.array(raw)


def errors(decisions: np.ndarray) -> int:
    return int((decisions != TRUTH).sum())


@needs_transformer
@pytest.mark.parametrize("how", ["max", "mean_top_k"])
def test_one_calibrated_threshold_serves_both_encoders(how: Aggregate) -> None:
    static, static_raw = scores(encoder("static"), how)
    st, st_raw = scores(encoder("sentence-transformers"), how)
    # Calibrated: the default threshold is right for >= 92% of decisions under both
    # encoders (measured: static 15 and 7 errors of 208, MiniLM 8 and 8), and the two
    # encoders decide alike >= 90% of the time (measured 92% and 95%).
    assert errors(static >= THRESHOLD) <= 17
    assert errors(st >= THRESHOLD) <= 12
    assert ((static >= THRESHOLD) == (st >= THRESHOLD)).mean() >= 0.90
    # Each encoder's own best calibrated threshold is close to the other's.
    grid = np.linspace(-1, 3, 401)
    best = [grid[np.argmin([errors(s >= t) for t in grid])] for s in (static, st)]
    assert abs(best[0] - best[1]) < 0.25
    # Raw cosines: MiniLM's best raw threshold is wrong for about half the static
    # decisions (measured 115 and 112 errors of 208).
    raw_best = grid[np.argmin([errors(st_raw >= t) for t in grid])]
    assert errors(st_raw >= raw_best) <= 12
    assert errors(static_raw >= raw_best) > 80


@needs_transformer
def test_small_labelled_set_same_decisions() -> None:
    signal, examples = "law", SIGNALS["law"]
    # The law prompts the weaker static model gets right (it misses "break my lease").
    on_topic = [ON_TOPIC["law"][i] for i in (0, 2, 3, 4, 6)]
    labelled = [(p, True) for p in on_topic] + [
        (p, False) for p in [*OFF_TOPIC[:5], *ON_TOPIC["cooking"][:3]]
    ]
    decisions = {}
    for backend in ("static", "sentence-transformers"):
        enc = encoder(backend)
        index = ExampleIndex(enc, {signal: examples})
        vectors = enc.encode([p for p, _ in labelled])
        decisions[backend] = [index.match(v)[0].score >= THRESHOLD for v in vectors]
    assert decisions["static"] == decisions["sentence-transformers"] == [f for _, f in labelled]
