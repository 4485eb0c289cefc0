"""``algorithm: latency``: candidates by their observed upstream latency (a decayed
average, see resilience/latency_tracker.py). A model not called yet goes first, so it gets
measured."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Self

from router_proxy.context import RequestContext
from router_proxy.resilience.latency_tracker import LatencyTracker
from router_proxy.selection.base import NoParams, Selector

if TYPE_CHECKING:
    from router_proxy.config.schema import ModelConfig
    from router_proxy.resources import BuildContext


class LatencySelector(Selector[NoParams]):
    def __init__(
        self,
        candidates: tuple[str, ...],
        models: Mapping[str, ModelConfig],
        params: NoParams,
        tracker: LatencyTracker | None = None,
    ) -> None:
        super().__init__(candidates, models, params)
        self.tracker = tracker or LatencyTracker()

    @classmethod
    def build(cls, candidates: tuple[str, ...], params: NoParams, ctx: BuildContext) -> Self:
        return cls(candidates, ctx.models, params, ctx.resources.latency)

    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        def key(model: str) -> float:
            average = self.tracker.average(model)
            return -1.0 if average is None else average

        return tuple(sorted(self.candidates, key=key))
