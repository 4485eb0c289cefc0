"""Context windows for a cascade's or aggregate's calls: each call is judged before it is
made, by the rules a single call's candidates are judged by (engine/context_fit.py).

- A model of the call that cannot take the prompt is passed over (``skipped: context``
  in the attempt log) and replaced by those of its own ``fallbacks`` that can. A call
  that writes the answer on its own (a cascade's last stage, a refiner) also takes the
  decision's ``context_fallbacks``, as a single call does; the parallel calls of a stage
  do not (two of them replaced by one model would agree with themselves).
- An upstream that refuses the prompt as too long moves the call on to a model with a
  larger window, or to a fitting fallback (the dispatcher's ``overflow``).
- A call left with no model is not made (``PassedOver``), and when no call of the plan
  could be made the client gets the 400 ``context_length_exceeded`` a single call gets.

The client's request is counted once for all its calls; a prompt of the gateway's own (a
verifier's, a refiner's) is counted for what it is, with no output asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from router_proxy.config.schema import ModelConfig
from router_proxy.context import RequestContext
from router_proxy.engine.context_fit import (
    ContextFit,
    PromptSize,
    RequestFit,
    Skipped,
    requested_output,
)
from router_proxy.errors import InvalidRequestError


class PassedOver(Exception):
    """No model of a call can take its prompt: the call is not made."""

    def __init__(self, error: InvalidRequestError) -> None:
        super().__init__(error.message)
        self.error = error  # what the client hears if nothing else answers


class PlanFit:
    """One multi-call request against the windows (made only when some model declares
    one)."""

    def __init__(
        self,
        context: ContextFit,
        ctx: RequestContext,
        decision: str,
        models: Mapping[str, ModelConfig],
        permitted: Callable[[str], bool] | None,
    ) -> None:
        assert context.cache is not None  # active: some model declares a window
        self.context, self.cache, self.ctx = context, context.cache, ctx
        self.models = models
        self.permitted = permitted
        self.context_fallbacks = self._reachable(context.fallbacks.get(decision, ()))
        self.output = requested_output(ctx)
        self._size: PromptSize | None = None  # the client's prompt, counted once if needed
        self.judged: list[RequestFit] = []  # the client's prompt's fits, call by call

    @property
    def size(self) -> PromptSize:
        if self._size is None:
            self._size = PromptSize.of_request(self.ctx, self.cache)
        return self._size

    def call(
        self,
        models: tuple[str, ...],
        skipped: Skipped,
        *,
        answers: bool,
        prompt: str | None,
    ) -> tuple[tuple[str, ...], RequestFit | None]:
        """The models a call tries (its own, then its replacements), and its fit for the
        dispatcher; ``prompt``: the gateway's own, else the client's request is sent.
        Raises ``PassedOver`` when none can take it."""
        own = [f for m in models for f in self.models[m].fallbacks]
        fallbacks = tuple(
            dict.fromkeys(
                m
                for m in self._reachable((*own, *(self.context_fallbacks if answers else ())))
                if m not in models
            )
        )
        limited = self.context.limited
        if limited.isdisjoint(models) and limited.isdisjoint(fallbacks):
            return models, None
        if prompt is None:
            fit = RequestFit(self.context, self.size, self.output, fallbacks)
            self.judged.append(fit)
        else:
            fit = RequestFit(self.context, PromptSize.of_text(prompt, self.cache), 0, fallbacks)
        kept = fit.select(models, skipped)
        if not kept:
            raise PassedOver(self.error() if prompt is None else fit.error())
        return kept, fit

    def error(self) -> InvalidRequestError:
        """The client's 400 when its request fits none of the models judged for it (as
        a single call's, naming the largest window on offer)."""
        whole = RequestFit(self.context, self.size, self.output, ())
        whole.considered = list(dict.fromkeys(m for fit in self.judged for m in fit.considered))
        return whole.error()

    def _reachable(self, models: tuple[str, ...]) -> tuple[str, ...]:
        permitted = self.permitted
        return models if permitted is None else tuple(m for m in models if permitted(m))
