"""``type: domain``: which of several labelled subjects the prompt is about, if any.

    - name: domain
      type: domain
      labels:
        law: ["is this contract binding", "can my landlord evict me", ...]
        medicine: ["what are the side effects of", "I have a fever and a cough", ...]

Decisions test it as ``{domain: law}``. Each label scores the prompt the way an
``embedding`` signal does (calibrated similarity, by default the mean of the 3 closest
examples); the best label wins only if it is confident (``min_confidence``) and clearly
ahead of the runner-up (``min_margin``), so an off-topic prompt gets no label at all.

Why nearest examples rather than a classifier fitted at load: policies give a handful of
examples a label, too few to fit one; a classifier has no notion of "none of these" (it
splits the whole space between the labels), while a calibrated score has an absolute
meaning that ``min_confidence`` can cut. The mean of the top 3 tolerates one odd example.
TODO: ``artifact:`` for a classifier trained offline on many examples per label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import RequestContext
from router_proxy.embeddings.base import Encoder
from router_proxy.embeddings.calibration import Aggregate, ExampleIndex, Match
from router_proxy.signals.base import Signal, SignalResult
from router_proxy.signals.embedding import SCORE_HELP, Example

if TYPE_CHECKING:
    from router_proxy.resources import BuildContext

Label = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]+$")]


class DomainSignalConfig(SignalConfigBase):
    type: Literal["domain"]
    labels: dict[Label, list[Example]] = Field(
        min_length=1, description="label -> example prompts of that subject"
    )
    min_confidence: float = Field(
        default=0.6, description=f"the best label's score must reach this; {SCORE_HELP}"
    )
    min_margin: float = Field(
        default=0.25,
        ge=0,
        description="the best label must beat the runner-up by this much (same scale)",
    )
    aggregate: Aggregate = Field(
        default="mean_top_k", description="how a label's example similarities combine"
    )
    top_k: int = Field(default=3, ge=1, description="for `aggregate: mean_top_k`")
    scope: Literal["last_user", "user", "all"] = Field(
        default="last_user", description="which messages are read"
    )

    @model_validator(mode="after")
    def _examples(self) -> DomainSignalConfig:
        empty = [label for label, examples in self.labels.items() if not examples]
        if empty:
            raise ValueError(f"labels without examples: {', '.join(empty)}")
        return self

    def accepts_value(self, value: object) -> str | None:
        if isinstance(value, str) and value in self.labels:
            return None
        return (
            f"signal '{self.name}' has no label {value!r}; "
            f"known labels: {', '.join(sorted(self.labels))}"
        )


class DomainSignal(Signal[DomainSignalConfig]):
    config_model = DomainSignalConfig
    cost_rank = 100  # a model call: cheap signals get the chance to settle a rule first

    def __init__(self, config: DomainSignalConfig, encoder: Encoder) -> None:
        super().__init__(config)
        self.encoder = encoder
        self.index = ExampleIndex(encoder, config.labels, config.aggregate, config.top_k)

    @classmethod
    def build(cls, config: DomainSignalConfig, ctx: BuildContext) -> DomainSignal:
        return cls(config, ctx.resources.encoder.get())

    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        text = ctx.text(self.config.scope)
        if not text.strip():
            return SignalResult(False, None, f"no text in {self.config.scope}")
        matches = self.index.match(await self.encoder.embed(text))
        best = matches[0]
        margin = best.score - matches[1].score if len(matches) > 1 else float("inf")
        scores = ", ".join(f"{m.label} {m.score:.2f}" for m in matches[:3])
        if best.score < self.config.min_confidence:
            why = f"no label: best {best.label} {best.score:.2f} < {self.config.min_confidence}"
            return SignalResult(False, None, f"{why} ({scores})")
        if margin < self.config.min_margin:
            why = f"no label: {best.label} ahead by {margin:.2f} < {self.config.min_margin}"
            return SignalResult(False, None, f"{why} ({scores})")
        return SignalResult(True, best.label, self._because(best, scores))

    @staticmethod
    def _because(best: Match, scores: str) -> str:
        return f"{best.label} ({scores}; closest example: {best.example!r})"
