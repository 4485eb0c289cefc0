"""Context windows: which of a request's candidates can take it, decided before any call.

A model that declares ``context_window`` takes a request whose prompt and requested
output (``max_completion_tokens`` / ``max_tokens``; none requested counts as 0) fit in
it; one that declares ``max_output_tokens`` takes no request asking for more. The others
are skipped (``skipped: context`` in the attempt log) and the decision's
``context_fallbacks`` join the order after the candidates. When nothing fits, the client
gets OpenAI's 400 ``context_length_exceeded`` naming the largest window.

The prompt is counted with the offline ``cl100k_base`` counter, once per request: the
messages' text and tool calls, the tool definitions, and OpenAI's few tokens of framing
per message. A prompt whose byte size alone is under a window is not counted at all (a
token covers at least one byte), and the counts of long texts are kept for a while
(``TokenCache``): a conversation resends its history every turn, and each turn counts
only what is new. When no model declares a window, nothing here runs.

The count is an estimate of each model's own (see signals/tokens.py): an upstream may
still refuse the prompt as too long. Its context-length error then moves on to the next
candidate with a larger window (``RequestFit.after``, called by the dispatcher).

A cascade or aggregate judges each of its calls the same way, against the same count
(engine/multi_call/fit.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from router_proxy.config.schema import DecisionConfig, ModelConfig
from router_proxy.context import RequestContext
from router_proxy.errors import InvalidRequestError
from router_proxy.protocol import message_text
from router_proxy.signals.tokens import shared_counter

# OpenAI's count of a chat prompt's framing: 3 tokens per message, 3 priming the reply.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
CONTEXT = "context"  # the attempt log's reason for a skipped model

Skipped = list[tuple[str, str]]


class TokenCache:
    """Counts of the long texts seen lately: a conversation sends its whole history on
    every turn, so each turn counts only what is new (a pasted document once, not once
    per turn). Bounded by the characters it holds; least recently used go first."""

    def __init__(self, max_chars: int = 8_000_000, min_chars: int = 512) -> None:
        self.counter = shared_counter()
        self.max_chars, self.min_chars = max_chars, min_chars
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._chars = 0

    def count(self, text: str) -> int:
        if len(text) < self.min_chars:
            return self.counter.count(text).tokens
        tokens = self._counts.get(text)
        if tokens is not None:
            self._counts.move_to_end(text)
            return tokens
        tokens = self._counts[text] = self.counter.count(text).tokens
        self._chars += len(text)
        while self._chars > self.max_chars and len(self._counts) > 1:
            old, _ = self._counts.popitem(last=False)
            self._chars -= len(old)
        return tokens


def _message_texts(ctx: RequestContext) -> list[str]:
    texts = []
    for message in ctx.request.messages:
        calls = (message.model_extra or {}).get("tool_calls")
        text = message_text(message)
        texts.append(text + "\n" + orjson.dumps(calls).decode() if calls else text)
    tools: Any = ctx.request.tools or ctx.raw_body.get("functions")
    if tools:
        texts.append(orjson.dumps(tools).decode())
    return texts


class PromptSize:
    """One request's prompt in tokens: its messages' text and tool calls, the tool
    definitions, and the framing; counted once, and only when its byte size does not
    settle the question (a token covers at least one byte)."""

    def __init__(self, texts: list[str], messages: int, cache: TokenCache) -> None:
        self._texts = texts
        self._cache = cache
        self._fixed = TOKENS_PER_MESSAGE * messages + REPLY_PRIMING
        self._ceiling: int | None = None
        self._total: int | None = None

    @classmethod
    def of_request(cls, ctx: RequestContext, cache: TokenCache) -> PromptSize:
        return cls(_message_texts(ctx), len(ctx.request.messages), cache)

    @classmethod
    def of_text(cls, text: str, cache: TokenCache) -> PromptSize:
        """A prompt of the gateway's own: one user message (a verifier's, a refiner's)."""
        return cls([text], 1, cache)

    def _ceiling_tokens(self) -> int:
        if self._ceiling is None:
            size = sum(len(t.encode("utf-8", "surrogatepass")) for t in self._texts)
            self._ceiling = self._fixed + size
        return self._ceiling

    def more_than(self, limit: int) -> bool:
        return self._ceiling_tokens() > limit and self.estimate() > limit

    def estimate(self) -> int:
        """The whole prompt's count."""
        if self._total is None:
            self._total = self._fixed + sum(self._cache.count(t) for t in self._texts)
        return self._total


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
        self.cache = TokenCache() if self.active else None

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
        assert self.cache is not None
        fit = RequestFit(
            self, PromptSize.of_request(ctx, self.cache), requested_output(ctx), fallbacks
        )
        kept = fit.select(candidates, skipped)
        if not kept:
            raise fit.error()
        return kept, fit


class RequestFit:
    """One request (or one call of a multi-call request) against the windows: the first
    check, and each upstream's refusal. ``output``: the answer's length asked for."""

    def __init__(
        self, fit: ContextFit, size: PromptSize, output: int, fallbacks: tuple[str, ...]
    ) -> None:
        self.windows, self.outputs = fit.windows, fit.outputs
        self.fallbacks = fallbacks
        self.output = output
        self.size = size
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


def dry_run(
    fit: ContextFit,
    decision: str,
    candidates: tuple[str, ...],
    ctx: RequestContext,
    reachable: Callable[[str], bool],
) -> dict[str, Any] | None:
    """What the windows would do to ``ctx`` (for ``POST /v1/route`` and ``explain``):
    its prompt's estimated tokens and the output asked for, the models passed over as too
    small, the order the rest would be tried in (the context fallbacks joining), or the
    400 it would get. None when no model declares a window."""
    if not fit.active:
        return None
    assert fit.cache is not None
    skipped: Skipped = []
    shown: dict[str, Any] = {
        "prompt_tokens": PromptSize.of_request(ctx, fit.cache).estimate(),
        "output_tokens": requested_output(ctx),
    }
    try:
        order, _ = fit.check(decision, candidates, ctx, skipped, reachable)
    except InvalidRequestError as exc:
        order, shown["error"] = (), exc.message
    shown["passed_over"] = [model for model, _ in skipped]
    shown["order"] = list(order)
    return shown
