"""The search behind a trained cascade: candidate plans, their outcomes on every training
row, and the cheapest best combination of one plan per kind of prompt at every budget.

Candidates (``families``):

* ``single``: one stage of one model, ``((m,),)`` (what meets low budgets);
* ``pair``: ``((a, b), (e,))``: a and b in parallel; their answers agree -> a's, else e's;
* ``triple``: ``((a, b, c), (e,))``: the same with three that must all agree;
* ``quad``: ``((a, b, c, d), (e,))``: four that must all agree;
* ``pair2``: ``((a, b), (c, d), (e,))``: two agreement stages before the last.

In a stage the model returned on agreement is the one with the higher training mean
score (when the answers agree they are the same answer, but a score may still differ).

Per kind, every candidate's (cost, quality) contribution to the mean over all rows is a
point; the kind's Pareto front (cheaper or better) is kept, and the fronts of all kinds
are merged into the Pareto front of their sums (exact: a multiple-choice knapsack solved
front by front). Each merged entry is one plan per kind.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from router_proxy.training.cascade_sim import Agreement, Stages, replay

FAMILIES = ("single", "pair", "triple", "quad", "pair2")
Vector = npt.NDArray[np.float64]


def candidates(
    models: Sequence[str], mean_score: Vector, families: Sequence[str], cheap: Sequence[str]
) -> list[Stages]:
    """Plans of the ``families``; agreement stages draw only from ``cheap`` models."""
    rank = {m: -float(mean_score[i]) for i, m in enumerate(models)}

    def stage(group: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(group, key=lambda m: (rank[m], m)))

    plans: list[Stages] = []
    if "single" in families:
        plans += [((m,),) for m in models]
    pairs = [stage(p) for p in itertools.combinations(cheap, 2)]
    if "pair" in families:
        plans += [(p, (e,)) for p in pairs for e in models if e not in p]
    if "triple" in families:
        triples = [stage(t) for t in itertools.combinations(cheap, 3)]
        plans += [(t, (e,)) for t in triples for e in models if e not in t]
    if "quad" in families:
        quads = [stage(q) for q in itertools.combinations(cheap, 4)]
        plans += [(q, (e,)) for q in quads for e in models if e not in q]
    if "pair2" in families:
        for first, second in itertools.permutations(pairs, 2):
            if set(first) & set(second):
                continue
            plans += [(first, second, (e,)) for e in models if e not in first + second]
    return plans


@dataclass(frozen=True)
class Outcomes:
    """Every candidate plan replayed on every training row."""

    plans: list[Stages]
    quality: npt.NDArray[np.float32]  # plans x rows
    cost: npt.NDArray[np.float32]  # plans x rows, US$ per request
    calls: npt.NDArray[np.float32]  # plans x rows


def outcomes(
    plans: list[Stages],
    agree: Agreement,
    scores: npt.NDArray[np.float32],
    costs: npt.NDArray[np.float32],
    column: dict[str, int],
) -> Outcomes:
    rows = np.arange(scores.shape[0])
    quality = np.empty((len(plans), len(rows)), dtype=np.float32)
    cost, calls = np.empty_like(quality), np.empty_like(quality)
    for i, plan in enumerate(plans):
        out = replay(plan, agree, rows, scores, costs, column)
        quality[i], cost[i], calls[i] = out.quality, out.cost, out.calls
    return Outcomes(plans, quality, cost, calls)


@dataclass(frozen=True)
class Frontier:
    """Entries cheapest first: training cost (US$/1k) and quality, one plan per kind."""

    cost: Vector
    quality: Vector
    policy: npt.NDArray[np.int32]  # entries x kinds, indices into the candidate plans

    def entry(self, budget_per_1k: float) -> int:
        return max(int(np.searchsorted(self.cost, budget_per_1k, side="right")) - 1, 0)


def pareto(cost: Vector, quality: Vector) -> npt.NDArray[np.intp]:
    """Indices of the points no other point beats on both (cheapest first)."""
    order = np.lexsort((-quality, cost))
    best = np.maximum.accumulate(quality[order])
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = quality[order][1:] > best[:-1]
    return order[keep]


def frontier(
    found: Outcomes,
    kinds: npt.NDArray[np.intp],
    allowed: Sequence[npt.NDArray[np.intp]],
    rows: npt.NDArray[np.intp],
) -> Frontier:
    """The merged front on ``rows``: kind k may use plans ``allowed[k]``; the row's kind
    is ``kinds[row]``. Points are contributions to the mean over ``rows``."""
    n = max(len(rows), 1)
    cost = np.zeros(1)
    quality = np.zeros(1)
    policy = np.zeros((1, 0), dtype=np.int32)
    for kind, plans in enumerate(allowed):
        members = rows[kinds[rows] == kind]
        c = found.cost[np.ix_(plans, members)].sum(axis=1, dtype=np.float64) * 1000.0 / n
        q = found.quality[np.ix_(plans, members)].sum(axis=1, dtype=np.float64) / n
        front = pareto(c, q)
        c, q, chosen = c[front], q[front], plans[front]
        total_c = (cost[:, None] + c[None, :]).ravel()
        total_q = (quality[:, None] + q[None, :]).ravel()
        keep = pareto(total_c, total_q)
        left, right = np.divmod(keep, len(c))
        cost, quality = total_c[keep], total_q[keep]
        policy = np.concatenate([policy[left], chosen[right][:, None].astype(np.int32)], axis=1)
    return Frontier(cost, quality, policy)
