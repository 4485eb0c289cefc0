"""``algorithm: static``: the candidates in the order the YAML lists them."""

from __future__ import annotations

from router_proxy.context import RequestContext
from router_proxy.selection.base import Selector


class StaticSelector(Selector):
    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        return self.candidates
