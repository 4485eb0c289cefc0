"""Context windows: which of a request's candidates can take it, decided before any call.

A model that declares ``context_window`` takes a request whose prompt and requested
output (``max_completion_tokens`` / ``max_tokens``; none requested counts as 0) fit in
it; one that declares ``max_output_tokens`` takes no request asking for more. The others
are skipped (``skipped: context`` in the attempt log) and the decision's
``context_fallbacks`` join the order after the candidates. When nothing fits, the client
gets OpenAI's 400 ``context_length_exceeded`` naming the largest window.

The prompt is counted with the offline ``cl100k_base`` counter, once per request and
only as far as the question needs (the count the length signals share): the messages'
text and tool calls, the tool definitions, and OpenAI's few tokens of framing per
message. A prompt whose byte size alone is under a window is not counted at all (a token
covers at least one byte). When no model declares a window, nothing here runs.

The count is an estimate of each model's own (see signals/tokens.py): an upstream may
still refuse the prompt as too long. Its context-length error then moves on to the next
candidate with a larger window (``RequestFit.after``, called by the dispatcher).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from router_proxy.config.schema import DecisionConfig, ModelConfig
from router_proxy.context import RequestContext
from router_proxy.errors import InvalidRequestError
from router_proxy.signals.length import running_count
from router_proxy.signals.tokens import RunningCount, shared_counter

# OpenAI's count of a chat prompt's framing: 3 tokens per message, 3 priming the reply.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
CONTEXT = "context"  # the attempt log's reason for a skipped model

Skipped = list[tuple[str, str]]


class PromptSize:
    """One request's prompt in tokens, counted only as far as a question needs."""

    def __init__(self, ctx: RequestContext) -> None:
        self._text = running_count(ctx)
        tools: Any = ctx.request.tools or ctx.raw_body.get("functions")
        self._tools_text = orjson.dumps(tools).decode() if tools else ""
        self._tools: int | None = None
        self._fixed = TOKENS_PER_MESSAGE * len(ctx.request.messages) + REPLY_PRIMING
        self._ceiling: int | None = None

    def _ceiling_tokens(self) -> int:
        """At most this many tokens: one per byte."""
        if self._ceiling is None:
            size = len(self._text.text.encode("utf-8", "surrogatepass"))
            self._ceiling = self._fixed + size + len(self._tools_text.encode("utf-8"))
        return self._ceiling

    def _tool_tokens(self) -> int:
        if self._tools is None:
            self._tools = 0
            if self._tools_text:
                self._tools = RunningCount(shared_counter(), self._tools_text).total().tokens
        return self._tools

    def more_than(self, limit: int) -> bool:
        if self._ceiling_tokens() <= limit:
            return False
        budget = limit - self._fixed - self._tool_tokens()
        return budget < 0 or self._text.reach(budget + 1).tokens > budget

    def estimate(self) -> int:
        """The whole prompt's count (for messages: counts to the end)."""
        return self._fixed + self._tool_tokens() + self._text.total().tokens


def requested_output(ctx: RequestContext) -> int:
    """The answer's length the client asked for at most (0: none asked)."""
    body = ctx.raw_body
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


class ContextFit:
    """The windows of one config's models; built with it."""

    def __init__(self, models: Mapping[str, ModelConfig], decisions: Iterable[DecisionConfig]):
        self.windows = {n: m.context_window for n, m in models.items() if m.context_window}
        self.outputs = {n: m.max_output_tokens for n, m in models.items() if m.max_output_tokens}
        self.fallbacks = {d.name: tuple(d.context_fallbacks) for d in decisions}
        self.limited = frozenset(self.windows) | frozenset(self.outputs)
        self.active = bool(self.limited)  # False: no request is ever counted

    def check(
        self,
        decision: str,
        candidates: tuple[str, ...],
        ctx: RequestContext,
        skipped: Skipped,
        serves: Callable[[str], bool],
    ) -> tuple[tuple[str, ...], RequestFit | None]:
        """The candidates that can take ``ctx``, in order (then the context fallbacks,
        when some cannot), and the request's fit for the dispatcher; raises the 400
        when none can."""
        if not self.active:
            return candidates, None
        fallbacks = tuple(m for m in self.fallbacks.get(decision, ()) if serves(m))
        if self.limited.isdisjoint(candidates) and self.limited.isdisjoint(fallbacks):
            return candidates, None
        fit = RequestFit(self, ctx, fallbacks)
        kept = fit.select(candidates, skipped)
        if not kept:
            raise fit.error()
        return kept, fit


class RequestFit:
    """One request against the windows: the first check, and each upstream's refusal."""

    def __init__(self, fit: ContextFit, ctx: RequestContext, fallbacks: tuple[str, ...]):
        self.windows, self.outputs = fit.windows, fit.outputs
        self.fallbacks = fallbacks
        self.output = requested_output(ctx)
        self.size = PromptSize(ctx)
        self.considered: list[str] = []  # every model judged, in order (for the error)
        self.too_small = 0  # the largest window an upstream said the prompt overflows

    def fits(self, model: str) -> bool:
        if model not in self.considered:
            self.considered.append(model)
        cap = self.outputs.get(model)
        if cap is not None and self.output > cap:
            return False
        window = self.windows.get(model)
        if window is None:
            return True
        return window > self.too_small and not self.size.more_than(window - self.output)

    def select(self, candidates: tuple[str, ...], skipped: Skipped) -> tuple[str, ...]:
        kept = self._judge(candidates, skipped)
        if len(kept) < len(candidates):  # some are too small: the context fallbacks join
            kept += self._judge(self._new(self.fallbacks, kept), skipped)
        return tuple(kept)

    def after(self, model: str, queue: list[str], skipped: Skipped) -> list[str]:
        """Called by the dispatcher when ``model`` refused the prompt as too long: the
        models left with a larger window that the prompt fits (unknown windows cannot
        be known to be larger), then the context fallbacks not yet judged."""
        window = self.windows.get(model)
        self.too_small = max(self.too_small, window or 0)
        left = []
        for m in queue:
            if m in self.windows and self.fits(m):
                left.append(m)
            else:
                skipped.append((m, CONTEXT))
        return left + self._judge(self._new(self.fallbacks, left), skipped)

    def _new(self, models: Iterable[str], kept: list[str]) -> list[str]:
        return [m for m in models if m not in kept and m not in self.considered]

    def _judge(self, models: Iterable[str], skipped: Skipped) -> list[str]:
        kept = []
        for model in models:
            if self.fits(model):
                kept.append(model)
            else:
                skipped.append((model, CONTEXT))
        return kept

    def error(self) -> InvalidRequestError:
        """400 in OpenAI's shape: what the request needs, and the largest window (or,
        when only the output asked for is too much everywhere, the largest output)."""
        capped = [m for m in self.considered if self.outputs.get(m, self.output) < self.output]
        if capped and len(capped) == len(self.considered):
            top = max(capped, key=lambda m: self.outputs[m])
            return InvalidRequestError(
                f"This request asks for {self.output} output tokens, more than any "
                f"candidate writes: the most is {self.outputs[top]} (model '{top}'). "
                "Please lower max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        prompt = self.size.estimate()
        asked = f" + {self.output} requested output" if self.output else ""
        sized = [m for m in self.considered if m in self.windows]
        if not sized:
            where = "no candidate declares a context window"
        else:
            top = max(sized, key=lambda m: self.windows[m])
            where = f"the largest context window is {self.windows[top]} tokens (model '{top}')"
        return InvalidRequestError(
            f"This request is too long for every candidate: it needs about "
            f"{prompt + self.output} tokens ({prompt} in the prompt{asked}); {where}. "
            "Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
        )
