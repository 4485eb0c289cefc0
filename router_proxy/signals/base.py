"""The interface of a signal: a named fact about a request that explains itself."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import RequestContext

if TYPE_CHECKING:
    from router_proxy.resources import BuildContext

SignalValueType = bool | str | float | None


@dataclass(frozen=True, slots=True)
class SignalResult:
    fired: bool
    value: SignalValueType
    detail: str  # why: what matched, or what was looked at

    def to_dict(self) -> dict[str, Any]:
        return {"fired": self.fired, "value": self.value, "detail": self.detail}


ConfigT = TypeVar("ConfigT", bound=SignalConfigBase)


class Signal(ABC, Generic[ConfigT]):
    """Built once at config load (compile patterns, embed examples there, never per
    request); ``evaluate`` runs on the hot path only when a decision needs the value."""

    config_model: ClassVar[type[SignalConfigBase]]
    # Lower runs first when several signals could decide a rule (cheap before heavy).
    cost_rank: ClassVar[int] = 0

    @classmethod
    def build(cls, config: Any, ctx: BuildContext) -> Self:
        """Signals that need shared resources (the encoder) override this."""
        return cls(config)

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        self.name = config.name

    @abstractmethod
    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        """The signal's value for this request."""


class CpuSignal(Signal[ConfigT]):
    """A signal whose cost grows with the text it reads (a detector, not a lookup). Its
    work is ``compute``, plain and thread-safe: the pipeline runs it inline for short
    text and in the CPU pool, within the routing budget, once ``text_chars`` is long."""

    @abstractmethod
    def text_chars(self, ctx: RequestContext) -> int:
        """How many characters ``compute`` would read."""

    @abstractmethod
    def compute(self, ctx: RequestContext) -> SignalResult:
        """The signal's value (called from a pool thread for long text)."""

    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        return self.compute(ctx)
