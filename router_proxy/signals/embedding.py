"""``type: embedding``: fires when the prompt is semantically close to the examples.

    - {name: math, type: embedding, threshold: 0.6,
       examples: ["solve for x", "compute the derivative of", "prove that"]}

The examples are embedded once, when the signal is built; a request costs one ``embed``
(cached, and ~1 ms with the default static encoder) and a dot product. The score is the
*calibrated* similarity (``router_proxy.embeddings.calibration``): 0 = as close to the
examples as a typical unrelated prompt, 1 = about as close as another question on the
same subject; the same threshold means the same under every encoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import RequestContext
from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.calibration import Aggregate, ExampleIndex
from router_proxy.signals.base import Signal, SignalResult

if TYPE_CHECKING:
    from router_proxy.resources import BuildContext

SCORE_HELP = (
    "calibrated similarity: 0 = as close to the examples as a typical unrelated prompt, "
    "1 = about as close as another question on the same subject, paraphrases 2+; "
    "the same scale under every encoder"
)


def _check_example(text: str) -> str:
    if not text.strip():
        raise ValueError("empty example")
    return text


Example = Annotated[str, AfterValidator(_check_example)]


class EmbeddingSignalConfig(SignalConfigBase):
    type: Literal["embedding"]
    examples: list[Example] = Field(min_length=1, description="prompts that should fire it")
    threshold: float = Field(default=0.6, description=f"fires at or above; {SCORE_HELP}")
    aggregate: Aggregate = Field(
        default="max",
        description="`max`: the closest example decides; `mean_top_k`: the mean of the "
        "top_k closest (steadier with many, varied examples)",
    )
    top_k: int = Field(default=3, ge=1, description="for `aggregate: mean_top_k`")
    scope: Literal["last_user", "user", "all"] = Field(
        default="last_user", description="which messages are read"
    )


class EmbeddingSignal(Signal[EmbeddingSignalConfig]):
    config_model = EmbeddingSignalConfig
    cost_rank = 100  # a model call: cheap signals get the chance to settle a rule first

    def __init__(self, config: EmbeddingSignalConfig, encoder: Encoder) -> None:
        super().__init__(config)
        self.encoder = encoder
        self.index = ExampleIndex(
            encoder, {config.name: config.examples}, config.aggregate, config.top_k
        )

    @classmethod
    def build(cls, config: EmbeddingSignalConfig, ctx: BuildContext) -> EmbeddingSignal:
        return cls(config, ctx.resources.encoder.get())

    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        text = ctx.text(self.config.scope)
        if not text.strip():
            return SignalResult(False, None, f"no text in {self.config.scope}")
        match = self.index.match(await self.encoder.embed(text))[0]
        fired = match.score >= self.config.threshold
        relation = ">=" if fired else "<"
        return SignalResult(
            fired,
            round(match.score, 4),
            f"score {match.score:.2f} {relation} {self.config.threshold} "
            f"(closest example: {match.example!r})",
        )
