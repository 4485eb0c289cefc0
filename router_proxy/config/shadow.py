"""A decision's ``shadow:`` block: the share of its live requests also sent, after the
client has its answer, to other models of the pool, so that their answers can be
recorded beside the served one (label-free retraining; engine/shadow.py runs it)."""

from __future__ import annotations

from pydantic import Field

from router_proxy.config.base import StrictModel


class ShadowConfig(StrictModel):
    share: float = Field(
        gt=0, le=1, description="share of the decision's answered requests shadowed (0..1]"
    )
    models: list[str] | None = Field(
        default=None,
        min_length=1,
        description="models each shadowed request is also sent to; absent = every "
        "candidate of the decision (the one that answered is never called twice)",
    )
    budget_usd_per_day: float = Field(
        gt=0,
        description="US$ (at the models' prices) shadow calls of this decision may spend "
        "per UTC day; once spent, no more shadow calls until the next day",
    )
    max_concurrent: int = Field(
        default=8,
        ge=1,
        description="shadow calls of this decision in flight at once; more are dropped "
        "(counted), never queued",
    )
