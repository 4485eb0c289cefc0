"""``algorithm: cheapest``: candidates by the estimated cost of this request from the cost
table: prompt tokens (about 4 characters each) x input price + ``expected_output_tokens``
x output price. Ties keep the YAML order."""

from __future__ import annotations

from pydantic import Field

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.selection.base import Selector


class CheapestParams(StrictModel):
    expected_output_tokens: int = Field(default=256, ge=0)


class CheapestSelector(Selector[CheapestParams]):
    config_model = CheapestParams

    async def order(self, ctx: RequestContext) -> tuple[str, ...]:
        prompt_tokens = len(ctx.text("all")) / 4
        output_tokens = self.params.expected_output_tokens

        def cost(model: str) -> float:
            price = self.models[model].cost
            return prompt_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok

        return tuple(sorted(self.candidates, key=cost))
