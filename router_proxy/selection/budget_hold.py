"""A live budget hold for a trained cascade (``hold_budget`` beside ``artifact`` and
``budget_per_1k``): the gateway steers the knob it asks the artifact with so that what
the decision's traffic really spends per 1,000 requests meets ``budget_per_1k``.

The knob is planned on the training rows; live traffic whose mix differs (more hard
prompts, a costlier kind more often) spends more or less at the same knob. The hold asks
the artifact with ``k_eff = budget_per_1k x correction`` and learns the correction from
each served request's cost (every call of its plan, as charged):

* each request's spend per 1k divided by the knob it was planned at is the traffic's
  *spend ratio* (1.0: it spends what it is given); its mean over about ``window`` recent
  requests (a plain mean until that many, then exponentially weighted) estimates it;
* the correction goes to 1 / ratio, the knob that would spend the budget at that ratio,
  at most ``MAX_STEP`` per request and within [1/``max_correction``, ``max_correction``];
  it does not move before ``min_requests``.

Normalising each cost by the knob it was planned at keeps the estimate free of the
correction's own history: a plain integral on the recent mean spend would keep pushing
while the window still holds requests made at the old knob, and overshoot. Spend grows
with the knob at most proportionally (a floor of cheap plans, a ceiling of the dearest),
so the update moves toward the budget without going past it, however the ratio lies.

What is counted: a request the plan ran and answered, at the cost of every call it made
(a failed call's, a discarded answer's, a verifier's; a stream's when it ends). Not
counted: a request answered from the response cache, which ran no plan (its answer was
bought, and counted, when it was stored): the hold keeps what the *plan* spends per
request at the budget, as the knob promises, and the cache's savings come on top
(``router_cache_saved_dollars``); a request that ended in an error, so that an outage
(every call failing, nothing spent) does not read as cheap traffic and raise the knob;
a request of another surface than chat (one model, no plan).

Per replica and per worker process: each holds its own correction from the share of
traffic it sees (the same budget on every one, so the fleet's mean meets it as each
does). Request-count based, not timed: quiet hours change nothing. A hot reload that
leaves the decision, its params and the artifact's plans unchanged keeps the state;
any other starts afresh at correction 1.

O(1) per request, no lock: it runs on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from router_proxy.config.base import StrictModel

# The correction moves at most this share per request: a burst of dear requests right
# after ``min_requests`` cannot swing the knob, and 0.25 -> 4 still takes ~140 requests.
MAX_STEP = 0.02


class HoldBudgetConfig(StrictModel):
    """``hold_budget: true`` or these fields (defaults as shown)."""

    window: int = Field(
        default=500,
        ge=10,
        description="requests the recent spend is measured over (an exponentially "
        "weighted mean with this span; a plain mean until that many)",
    )
    min_requests: int = Field(
        default=100,
        ge=0,
        description="requests served before the knob first moves",
    )
    max_correction: float = Field(
        default=4.0,
        gt=1,
        le=100,
        description="the knob stays within budget_per_1k / max_correction and "
        "budget_per_1k x max_correction",
    )


@dataclass(slots=True)
class HoldState:
    """What the hold has learned; shared with the next config's hold by a reload that
    keeps the decision unchanged (requests still in flight on the old one count too)."""

    requests: int = 0
    ratio: float = 1.0  # recent spend per 1k / the knob it was planned at
    spend_per_1k: float = 0.0  # recent mean spend per 1k requests (for reading only)
    correction: float = 1.0


class BudgetHold:
    """One decision's hold: ``knob`` is what to ask the artifact with now; ``observe``
    is told what each request the plan ran cost, and at which knob it was planned."""

    __slots__ = ("_alpha", "_high", "_low", "budget_per_1k", "config", "state")

    def __init__(self, budget_per_1k: float, config: HoldBudgetConfig) -> None:
        if budget_per_1k <= 0:
            raise ValueError("a budget hold needs a budget above 0")
        self.budget_per_1k = budget_per_1k
        self.config = config
        self.state = HoldState()
        self._alpha = 2.0 / (config.window + 1)  # an EWMA of span ``window``
        self._low, self._high = 1.0 / config.max_correction, config.max_correction

    @property
    def knob(self) -> float:
        """The ``budget_per_1k`` to ask the artifact with now."""
        return self.budget_per_1k * self.state.correction

    def observe(self, cost_usd: float, knob: float) -> None:
        """A request the plan ran at ``knob`` has ended having spent ``cost_usd``."""
        state = self.state
        state.requests += 1
        weight = max(1.0 / state.requests, self._alpha)
        spend = cost_usd * 1000.0
        state.spend_per_1k += weight * (spend - state.spend_per_1k)
        state.ratio += weight * (spend / knob - state.ratio)
        if state.requests < self.config.min_requests:
            return
        wanted = 1.0 / state.ratio if state.ratio > 0 else self._high
        now = state.correction
        stepped = min(max(wanted, now * (1.0 - MAX_STEP)), now * (1.0 + MAX_STEP))
        state.correction = min(max(stepped, self._low), self._high)

    def adopt(self, previous: BudgetHold) -> None:
        """Go on from ``previous``'s state (a reload that left the decision unchanged)."""
        self.state = previous.state

    def describe(self) -> dict[str, Any]:
        """For ``POST /v1/route`` and ``router-proxy explain``."""
        state = self.state
        return {
            "budget_per_1k": self.budget_per_1k,
            "effective_per_1k": round(self.knob, 6),
            "correction": round(state.correction, 6),
            "requests": state.requests,
            "recent_spend_per_1k": round(state.spend_per_1k, 6),
            "window": self.config.window,
            "min_requests": self.config.min_requests,
        }
