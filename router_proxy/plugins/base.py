"""The interface of a plugin: a pure edit of the outgoing OpenAI-format body."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel

from router_proxy.context import RequestContext

if TYPE_CHECKING:
    from router_proxy.resources import BuildContext

Body = dict[str, Any]


class Plugin(ABC):
    """Built once per decision at load. ``apply`` returns a new body (never mutates the
    client's, which other steps and logs may still read)."""

    name: ClassVar[str]
    # What a YAML item `{name: <value>}` is validated as (a model, or a union with one).
    config_model: ClassVar[Any]
    # Its work grows with the body's text (redaction): on long text the engine runs the
    # plugins in the CPU pool, off the event loop.
    cpu_bound: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def build(cls, config: Any, ctx: BuildContext) -> Self:
        """Plugins that need shared resources override this."""
        return cls(config)

    @abstractmethod
    def apply(self, body: Body, ctx: RequestContext) -> Body:
        """The body to send upstream."""

    def describe(self) -> str:
        value = self.config.model_dump() if isinstance(self.config, BaseModel) else self.config
        return f"{self.name}: {value}"
