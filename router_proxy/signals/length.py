"""``type: length``: how many tokens the whole conversation holds.

Counts every message's text (list-of-parts content included, images contribute nothing)
plus the names and arguments of tool calls, with the ``cl100k_base`` tokenizer
(see ``tokens.py`` for how close that is to other model families, and for the sampled
estimate used on texts over 64 Ki characters). Chat-format overhead (a few tokens per
message) and tool definitions are not counted. Fires when the count is within
``min_tokens`` <= count <= ``max_tokens`` (either bound may be left out).

Counting goes only as far as the answer needs (the hot path stays cheap on long prompts):
it stops once the count passes ``max_tokens`` or reaches ``min_tokens`` (detail ``>=N``),
and text with fewer bytes than ``min_tokens`` is not counted at all, since a token covers
at least one byte (detail ``<=N``). The value is that count or bound; the signals of one
request share it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import RequestContext
from router_proxy.signals.base import Signal, SignalResult
from router_proxy.signals.conversation import conversation_text
from router_proxy.signals.tokens import RunningCount, shared_counter


class LengthSignalConfig(SignalConfigBase):
    type: Literal["length"]
    min_tokens: int | None = Field(
        default=None,
        ge=0,
        description="fires only if the conversation has at least this many tokens",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=0,
        description="fires only if the conversation has at most this many tokens",
    )

    @model_validator(mode="after")
    def _has_bound(self) -> LengthSignalConfig:
        if self.min_tokens is None and self.max_tokens is None:
            raise ValueError("a length signal needs `min_tokens`, `max_tokens` or both")
        if (
            self.min_tokens is not None
            and self.max_tokens is not None
            and self.min_tokens > self.max_tokens
        ):
            raise ValueError(
                f"min_tokens ({self.min_tokens}) is greater than max_tokens "
                f"({self.max_tokens}): the signal could never fire"
            )
        return self

    def accepts_value(self, value: object) -> str | None:
        return (
            f"signal '{self.name}' fires on a token range; write `{self.name}` and set "
            f"min_tokens / max_tokens on the signal, not {{{self.name}: {value}}}"
        )

    def bounds(self) -> str:
        if self.max_tokens is None:
            return f">= {self.min_tokens}"
        if self.min_tokens is None:
            return f"<= {self.max_tokens}"
        return f"{self.min_tokens}..{self.max_tokens}"


_MEMO_KEY = "length.token_count"


class LengthSignal(Signal[LengthSignalConfig]):
    config_model = LengthSignalConfig
    cost_rank = 5

    def __init__(self, config: LengthSignalConfig) -> None:
        super().__init__(config)
        self._counter = shared_counter()  # loads the vocabulary once per process

    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        running = ctx.memo.get(_MEMO_KEY)
        if running is None:  # several length signals share one count per request
            running = ctx.memo[_MEMO_KEY] = RunningCount(self._counter, conversation_text(ctx))
        low, high = self.config.min_tokens, self.config.max_tokens
        # Count only as far as the answer needs: past max_tokens, or up to min_tokens.
        count = running.reach(high + 1 if high is not None else low or 0)
        fired = (low is None or count.tokens >= low) and (high is None or count.tokens <= high)
        noun = "token" if count.tokens == 1 else "tokens"
        verdict = "in range" if fired else "needs"
        return SignalResult(
            fired, count.tokens, f"{count} {noun}, {verdict} {self.config.bounds()}"
        )
