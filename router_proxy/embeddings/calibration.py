"""Calibrated similarity: a signal's threshold means the same whichever encoder runs.

Raw cosines live on each encoder's own scale: the static model rates two unrelated
prompts ~0.2 similar, MiniLM ~0.03; a same-subject pair ~0.39 and ~0.21. So signals
never compare raw cosines with a threshold; they compare the *calibrated score*

    score = (raw - offset) / (related - unrelated)

raw        the signal's aggregate (max, or mean of the top k) of the cosines between the
           prompt and its examples;
offset     the same aggregate for each prompt of a background corpus against the same
           examples, median over the corpus: what an unrelated prompt typically scores
           against *these* examples (it absorbs how many examples there are and how
           generic they are), measured when the signal is built;
unrelated  median cosine of two background prompts on different topics,
related    median cosine of two background prompts on the same topic: both measured
           once per encoder at load, on ``background.txt`` (40 topics x 5 prompts, varied
           styles and languages).

So 0 is "as close to the examples as a typical unrelated prompt", 1 is one same-subject
step closer (about as close as another question on the same subject usually is), and
near-paraphrases of an example score 2 and more. On the labelled set of the tests the
threshold that best separates on-topic from off-topic prompts is 0.6-0.8 under both
encoders; signals default to 0.6.

Why not the percentile of the raw cosine among background cosines: it saturates at 1.0
for every prompt closer than the closest background prompt, which is just the range where
thresholds are set. A single global offset instead of ``offset`` let thresholds drift by
signal (many examples push every prompt's max up).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from router_proxy.embeddings.base import Vectors

if TYPE_CHECKING:
    from router_proxy.embeddings.base import Encoder

BACKGROUND = Path(__file__).resolve().parent / "background.txt"
Aggregate = Literal["max", "mean_top_k"]


def load_background(path: Path = BACKGROUND) -> tuple[list[str], list[str]]:
    """(topic of each prompt, prompts) from ``## topic`` sections; ``#`` lines are comments."""
    topics: list[str] = []
    prompts: list[str] = []
    topic = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            topic = line[3:].strip()
        elif line.strip() and not line.startswith("#"):
            topics.append(topic)
            prompts.append(line.strip())
    return topics, prompts


@dataclass(frozen=True, eq=False)
class Calibration:
    unrelated: float  # median cosine, background prompts on different topics
    related: float  # median cosine, background prompts on the same topic
    background: Vectors  # the background prompts' vectors, for per-signal offsets

    @property
    def scale(self) -> float:
        return self.related - self.unrelated

    @classmethod
    def measure(cls, encoder: Encoder, path: Path = BACKGROUND) -> Calibration:
        topics, prompts = load_background(path)
        vectors = encoder.encode(prompts)
        upper = np.triu_indices(len(prompts), 1)
        cosines = (vectors @ vectors.T)[upper]
        labels = np.array(topics)
        same = (labels[:, None] == labels[None, :])[upper]
        if not same.any() or same.all():
            raise ValueError(f"{path}: needs several topics with several prompts each")
        unrelated = float(np.median(cosines[~same]))
        related = float(np.median(cosines[same]))
        if related - unrelated < 0.01:
            raise ValueError(
                f"encoder {encoder.name} rates same-topic prompts no closer than unrelated "
                f"ones ({related:.3f} vs {unrelated:.3f}): it cannot be calibrated"
            )
        return cls(unrelated, related, vectors)


def aggregate(cosines: NDArray[np.float32], how: Aggregate, top_k: int) -> NDArray[np.float32]:
    """Reduce the last axis (one column per example) to one raw score."""
    k = min(top_k, cosines.shape[-1]) if how == "mean_top_k" else 1
    if k == 1:
        best: NDArray[np.float32] = cosines.max(axis=-1)
        return best
    top: NDArray[np.float32] = np.partition(cosines, -k, axis=-1)[..., -k:].mean(axis=-1)
    return top


@dataclass(frozen=True, slots=True)
class Match:
    label: str
    score: float  # calibrated
    example: str  # the label's example closest to the prompt


class ExampleIndex:
    """Labelled groups of example prompts, embedded once at load; ``match`` scores a
    prompt's vector against every group on the calibrated scale, best first."""

    def __init__(
        self,
        encoder: Encoder,
        groups: Mapping[str, Sequence[str]],
        how: Aggregate = "max",
        top_k: int = 3,
    ) -> None:
        self.labels = list(groups)
        self.examples = [text for texts in groups.values() for text in texts]
        self.how = how
        self.top_k = top_k
        self.vectors = encoder.encode(self.examples)
        bounds = np.cumsum([0, *(len(texts) for texts in groups.values())])
        self._slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        calibration = encoder.calibration
        background = calibration.background @ self.vectors.T
        self.offsets = [
            float(np.median(aggregate(background[:, s], how, top_k))) for s in self._slices
        ]
        self.scale = calibration.scale

    def match(self, vector: Vectors) -> list[Match]:
        cosines = self.vectors @ vector
        matches = []
        for label, part, offset in zip(self.labels, self._slices, self.offsets, strict=True):
            group = cosines[part]
            raw = float(aggregate(group, self.how, self.top_k))
            closest = self.examples[part.start + int(group.argmax())]
            matches.append(Match(label, (raw - offset) / self.scale, closest))
        matches.sort(key=lambda m: m.score, reverse=True)
        return matches
