"""Session affinity: the turns of one conversation go to the model that answered it.

A conversation is named by the client (``affinity.header``, ``x-session-id`` by
default) or, without that header, by a hash of its prefix: the messages up to and
including the first user turn (the system prompt and that turn), which every later turn
repeats. Bindings are per client key, so two keys never share one.

Each turn is routed as usual (the decision may change with the conversation); then, if
the session is bound to a model that can still take the request (one of the decision's
candidates or their fallbacks, after the context-window check), that model goes first.
Dispatch decides the rest as for any request: a bound model whose breaker is open or
that is over its limits is skipped, one that fails falls back. The model that answers is
bound for the next turn. The verdict, in ``x-router-affinity``, the log line and
``router_affinity_total``:

- ``hit``: the bound model answered;
- ``miss``: nothing was bound (a first turn, or the binding expired);
- ``rebound``: another model answered and is bound now; ``router_affinity_rebound_total``
  and the log line's ``rebound`` say why: ``decision_changed``, ``not_a_candidate``,
  ``context``, ``breaker_open``, ``rate_limited``, ``failed``.

A decision's ``affinity`` says when the policy re-decides: ``sticky`` (the default)
keeps the bound model whichever decision bound it, as long as it is one of this
decision's candidates (a policy's constraint, e.g. private data to a local model only,
always wins); ``decision`` re-routes a conversation that comes from another decision;
``off`` routes every turn on its own, as is every request that names a model (nothing to
choose) and every embedding or text completion.

A cascade or aggregate is not pinned (``pin=False``): its stop rule needs the models its
plan names. The model whose answer it returns is bound like a single call's answering
model, so a later turn routed to one model stays on it; a turn whose plan returned
another model's answer is a rebound for ``multi_call`` (engine/multi_call/turn.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from router_proxy.config.conversations import AffinityConfig
from router_proxy.config.schema import DecisionConfig, ModelConfig
from router_proxy.context import RequestContext
from router_proxy.engine.turn_note import TurnNote
from router_proxy.observability.metrics import Metrics
from router_proxy.pipeline import RoutePlan
from router_proxy.protocol import ChatMessage, message_text
from router_proxy.resilience.dispatch import AttemptLog
from router_proxy.resilience.sessions import Binding, SessionStore

MAX_SESSION_CHARS = 128  # a longer (or unprintable) client id is shown as its hash


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=10)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def prefix_session(messages: list[ChatMessage]) -> str:
    """``p-`` and a hash of the messages up to and including the first user turn."""
    parts: list[str] = []
    for message in messages:
        parts += (message.role, message_text(message))
        if message.role == "user":
            break
    return "p-" + _digest(*parts)


def header_session(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if len(value) <= MAX_SESSION_CHARS and value.isascii() and value.isprintable():
        return value
    return "h-" + _digest(value)


@dataclass(slots=True)
class SessionTurn:
    """One turn's affinity: the binding found, and why it could not be kept (if known
    before dispatch)."""

    note: TurnNote
    key: str
    decision: str
    bound: Binding | None
    reason: str | None = None
    # Why another model answered when nothing else says so: the bound one failed (a
    # single call), or the plan chose another's answer (``multi_call``).
    otherwise: str = "failed"

    @property
    def previous(self) -> str | None:
        """The model that wrote the conversation so far, as far as the gateway knows."""
        return self.bound.model if self.bound is not None else None


class Affinity:
    """Built once per config (when ``affinity.enabled``)."""

    def __init__(
        self,
        config: AffinityConfig,
        decisions: Iterable[DecisionConfig],
        models: Mapping[str, ModelConfig],
        store: SessionStore,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.header = config.header.lower()
        self.off = frozenset(d.name for d in decisions if d.affinity == "off")
        self.sticky = frozenset(d.name for d in decisions if d.affinity == "sticky")
        self.fallbacks = {name: tuple(m.fallbacks) for name, m in models.items()}
        self.store = store
        self.metrics = metrics
        self._counters: dict[tuple[str, str, str], Any] = {}  # resolved label sets

    def session(self, ctx: RequestContext) -> str | None:
        value = ctx.headers.get(self.header)
        if value is not None:
            return header_session(value)
        return prefix_session(ctx.request.messages) if self.config.from_prefix else None

    def applies(self, plan: RoutePlan, ctx: RequestContext) -> bool:
        return plan.via != "model" and ctx.endpoint == "chat" and plan.decision not in self.off

    async def begin(
        self,
        plan: RoutePlan,
        ctx: RequestContext,
        client: str,
        candidates: tuple[str, ...],
        *,
        pin: bool = True,
    ) -> tuple[tuple[str, ...], SessionTurn | None]:
        """``candidates``: those that can take the request, in order; returned with the
        bound model first when it is kept (and ``pin``: a multi-call plan's order is its
        own)."""
        session = self.session(ctx)
        if session is None:
            return candidates, None
        key = self.store.key(client, session)
        bound = await self.store.get(key)
        turn = SessionTurn(TurnNote(session), key, plan.decision, bound)
        if not pin:
            turn.otherwise = "multi_call"
        if bound is None:
            return candidates, turn
        model = bound.model
        if bound.decision != plan.decision and plan.decision not in self.sticky:
            turn.reason = "decision_changed"
        elif model in candidates:
            if pin:
                turn.note.kept = model
                return (model, *(m for m in candidates if m != model)), turn
        elif any(model in self.fallbacks.get(m, ()) for m in candidates):
            if pin:
                turn.note.kept = model  # reached before as a fallback: it stays
                return (model, *candidates), turn
        elif model in plan.candidates:
            turn.reason = "context"  # too small for the conversation now
        else:
            turn.reason = "not_a_candidate"
        return candidates, turn

    def settle(self, turn: SessionTurn, log: AttemptLog) -> None:
        """A model answered: the verdict, and the binding for the next turn."""
        answered, bound = log.model, turn.bound
        if answered is None:
            return
        note = turn.note
        if bound is None:
            note.affinity = "miss"
        elif answered == bound.model and turn.reason is None:
            note.affinity = "hit"
        else:
            note.affinity = "rebound"
            note.reason = turn.reason or _why_not(bound.model, log, turn.otherwise)
            self._count("rebound", turn.decision, note.reason)
        self._count("affinity", turn.decision, note.affinity)
        if note.affinity != "hit" or bound is None or bound.decision != turn.decision:
            self.store.put(turn.key, Binding(answered, turn.decision))

    def _count(self, metric: str, decision: str, label: str) -> None:
        # Label lookups take a lock and validate names: resolved once per label set.
        counter = self._counters.get((metric, decision, label))
        if counter is None:
            family = self.metrics.affinity if metric == "affinity" else self.metrics.rebound
            counter = self._counters[(metric, decision, label)] = family.labels(decision, label)
        counter.inc()


def _why_not(model: str, log: AttemptLog, otherwise: str) -> str:
    """Why the bound model did not answer: it was passed over, or ``otherwise``."""
    for skipped, why in log.skipped:
        if skipped == model:
            return why
    return otherwise
