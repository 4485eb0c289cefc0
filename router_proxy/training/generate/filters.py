"""The paper's two filters on generated queries, judged one query at a time.

1. Generator agreement: keep a query only if the generator's own answer is the pool's
   consensus answer. A generator that gets its own question wrong (by the pool's vote)
   wrote a bad question or a bad key; either way the row teaches the router noise.
   Drops: ``generator_no_answer`` (its answer could not be read), ``generator_disagrees``.
2. Differentiation: keep a query only if its answers separate the pool.
   Drops: ``unanimous`` (every pool model gave the same answer: nothing to learn about
   who is better) and ``no_majority`` (no answer has ``majority_share`` of the pool's
   votes, or the top answers tie: the consensus is a guess).

The consensus is the plurality answer (one vote per model; no answer is no vote). Each
query is counted once, by the first reason that drops it, in the order of ``REASONS``:
an unreadable generator answer, then no majority (with only the agreement filter on, a
tie at the top still drops the query there: there is no consensus to agree with), then
disagreement, then unanimity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

REASONS = ("generator_no_answer", "no_majority", "generator_disagrees", "unanimous")


@dataclass(frozen=True)
class FilterSettings:
    agreement: bool = True
    differentiation: bool = True
    majority_share: float = 0.5

    def describe(self) -> dict[str, object]:
        return {
            "generator_agreement": self.agreement,
            "differentiation": self.differentiation,
            "majority_share": self.majority_share,
            "order": list(REASONS),
        }


def consensus_answer(answers: Sequence[Hashable | None]) -> tuple[Hashable | None, float]:
    """The plurality answer (None when there is none or the top answers tie) and the share
    of the pool that gave it."""
    votes = Counter(a for a in answers if a is not None).most_common(2)
    if not votes or (len(votes) == 2 and votes[0][1] == votes[1][1]):
        return None, votes[0][1] / len(answers) if votes else 0.0
    return votes[0][0], votes[0][1] / len(answers)


def verdict(
    key: Hashable | None, answers: Sequence[Hashable | None], settings: FilterSettings
) -> str | None:
    """Why the query is dropped (one of ``REASONS``), or None to keep it."""
    top, share = consensus_answer(answers)
    if settings.agreement and key is None:
        return "generator_no_answer"
    weak = share < settings.majority_share
    if (top is None and (settings.agreement or settings.differentiation)) or (
        settings.differentiation and weak
    ):
        return "no_majority"
    if settings.agreement and key != top:
        return "generator_disagrees"
    if settings.differentiation and all(a == top for a in answers):
        return "unanimous"
    return None
