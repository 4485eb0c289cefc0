"""A cascade's or aggregate's part in its conversation: what a single call's turn
(engine/conversation.py) does, done for each of its calls.

- Context windows: each call's models are judged before it is made (``fit.py``), and an
  upstream's context-length refusal moves the call on to a model that fits.
- Session affinity pins nothing here: a stop rule needs the models its plan names, in its
  order. The session's binding is read, each model other than the one that wrote the
  history gets it made valid (``Turn.outgoing``), and the model whose answer is returned
  is bound to the session, as a single call's answering model is: a following turn
  routed to one model stays on it. ``x-router-affinity`` says ``hit`` when the bound
  model's answer was returned, ``miss`` when nothing was bound, ``rebound`` otherwise
  (``multi_call``, unless the decision changed or the bound model was passed over).

With no window declared and affinity off, none of this is made (``begin`` is not even
awaited): a call costs one attribute read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from router_proxy.config.schema import ModelConfig
from router_proxy.context import RequestContext
from router_proxy.engine.context_fit import RequestFit, Skipped
from router_proxy.engine.conversation import Conversations, Turn
from router_proxy.engine.multi_call.fit import PlanFit
from router_proxy.engine.record import RequestRecord
from router_proxy.pipeline import RoutePlan


@dataclass(slots=True)
class CallsTurn:
    fit: PlanFit | None  # None: no model of the config declares a window
    turn: Turn  # its session (None when affinity does not apply): what each model is sent

    def models(
        self, models: tuple[str, ...], skipped: Skipped, answers: bool, prompt: str | None
    ) -> tuple[tuple[str, ...], RequestFit | None]:
        """A call's models that can take its prompt, and its fit for the dispatcher
        (``PlanFit.call``)."""
        if self.fit is None:
            return models, None
        return self.fit.call(models, skipped, answers=answers, prompt=prompt)


def applies(conversations: Conversations) -> bool:
    """Whether a multi-call request has anything to do here (checked before ``begin``)."""
    return conversations.context.active or conversations.affinity is not None


async def begin(
    conversations: Conversations,
    plan: RoutePlan,
    ctx: RequestContext,
    record: RequestRecord,
    models: Mapping[str, ModelConfig],
    permitted: Callable[[str], bool] | None,
) -> CallsTurn | None:
    """The request's turn; None when neither windows nor a session apply to it."""
    fit = None
    if conversations.context.active:
        fit = PlanFit(conversations.context, ctx, plan.decision, models, permitted)
    affinity, session = conversations.affinity, None
    if affinity is not None and affinity.applies(plan, ctx):
        _, session = await affinity.begin(plan, ctx, record.client, plan.candidates, pin=False)
        if session is not None:
            record.turn = session.note
    if fit is None and session is None:
        return None
    native = conversations.native if session is not None else None
    return CallsTurn(fit, Turn(plan.candidates, session=session, native=native))
