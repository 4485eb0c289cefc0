"""The interface of a selection algorithm."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext

if TYPE_CHECKING:
    from router_proxy.config.schema import Config, ModelConfig
    from router_proxy.resources import BuildContext


class NoParams(StrictModel):
    pass


ParamsT = TypeVar("ParamsT", bound=StrictModel)


class Selector(ABC, Generic[ParamsT]):
    """Built once per decision at config load; ``order`` runs per request.

    ``order`` returns the candidates best first: the first is called, the rest are the
    fallback order. ``config_model`` validates the decision's ``route.params``.
    """

    config_model: ClassVar[type[StrictModel]] = NoParams

    def __init__(
        self, candidates: tuple[str, ...], models: Mapping[str, ModelConfig], params: ParamsT
    ) -> None:
        self.candidates = candidates
        self.models = models
        self.params = params

    @classmethod
    def check(cls, candidates: tuple[str, ...], params: Any, config: Config) -> list[str]:
        """Cheap checks at config load (files exist, artifacts fit); problems as messages
        about ``route.params``. Heavy loading waits for ``build``."""
        return []

    @classmethod
    def build(cls, candidates: tuple[str, ...], params: ParamsT, ctx: BuildContext) -> Self:
        """Selectors that load artifacts or need shared resources override this."""
        return cls(candidates, ctx.models, params)

    @abstractmethod
    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        """Candidates, best first."""

    def carry_from(self, previous: Selector[Any]) -> None:
        """A hot reload built this selector for a decision of the same name that
        ``previous`` served: keep what it learned from live traffic, if anything, while
        that still holds (a cascade's budget hold). Most selectors learn nothing live."""
