"""``algorithm: static``: the candidates in the order the YAML lists them."""

from __future__ import annotations

from router_proxy.context import RequestContext
from router_proxy.selection.base import NoParams, Selector


class StaticSelector(Selector[NoParams]):
    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        return self.candidates
