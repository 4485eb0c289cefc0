"""The interface of a selection algorithm."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from router_proxy.config.base import StrictModel
from router_proxy.config.schema import ModelConfig
from router_proxy.context import RequestContext


class NoParams(StrictModel):
    pass


class Selector(ABC):
    """Built once per decision at config load; ``order`` runs per request.

    ``order`` returns the candidates best first: the first is called, the rest are the
    fallback order.
    """

    params_model: ClassVar[type[StrictModel]] = NoParams

    def __init__(
        self, candidates: tuple[str, ...], models: Mapping[str, ModelConfig], params: StrictModel
    ) -> None:
        self.candidates = candidates
        self.models = models
        self.params = params

    @abstractmethod
    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        """Candidates, best first."""
