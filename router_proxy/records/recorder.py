"""Which requests are recorded, and the served record of one that is.

Sampling is drawn once per request, when it has been routed (its decision is known), so
a stream whose record keeps content collects its answer as it is relayed; a request
refused before routing (bad key, bad body) is drawn at its end with the section's rate.
The record is assembled when the request is accounted (``Accounting.finish``); the costly
parts (the messages' JSON, the answer's text from its bytes, redaction) are done by the
sink's writer thread.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router_proxy.context import RequestContext
from router_proxy.plugins.redact_pii import RedactPiiPlugin
from router_proxy.protocol import ChatMessage, Usage
from router_proxy.records.answer_text import answer_text
from router_proxy.records.calls import call_entries, fill_relayed
from router_proxy.records.config import RecordsConfig
from router_proxy.records.redaction import redact
from router_proxy.records.usage import usage_fields
from router_proxy.records.writer import QueuedWriter, Record

if TYPE_CHECKING:
    from router_proxy.engine.record import RequestRecord
    from router_proxy.pipeline import RoutePlan

VERSION = 1


@dataclass(slots=True)
class Content:
    """What a content record keeps of its request, and the answer as relayed."""

    prompt: str  # the last user turn: what learned selectors embed
    messages: Sequence[ChatMessage]
    wire_format: str  # of the answer when it is not native: the endpoint's
    native_format: str | None  # of a native answer (the client's own API)
    redactor: RedactPiiPlugin | None  # the decision's redact_pii plugin, if any
    chars: int  # of the messages' text: what the record holds until it is written
    answer: list[bytes] = field(default_factory=list)  # the body, or the stream's blocks
    native: bool = False
    streamed: bool = False

    def weight(self) -> int:
        """Roughly the bytes this content holds while it waits for the writer."""
        return len(self.prompt) + self.chars + sum(len(part) for part in self.answer)

    def keep(self, body: bytes, native: bool) -> None:
        self.answer.append(body)
        self.native = native

    def finish(self, record: Record) -> Record:
        """The record with its content (in the writer thread)."""
        wire = self.native_format if self.native and self.native_format else self.wire_format
        out = dict(record)
        out["prompt"] = self.prompt
        out["messages"] = [m.model_dump(mode="json", exclude_none=True) for m in self.messages]
        out["answer"] = answer_text(self.answer, wire, self.streamed)
        fill_relayed(out)
        return redact(out, self.redactor) if self.redactor is not None else out


@dataclass(frozen=True, slots=True)
class Sample:
    recorded: bool
    requested: str | None = None  # the request's `model` (auto, a decision, a model)
    content: Content | None = None


SKIPPED = Sample(False)
UNROUTED = Sample(True)


@dataclass(frozen=True, slots=True)
class Policy:
    rate: float
    content: bool


class Recorder:
    def __init__(
        self,
        config: RecordsConfig,
        sink: QueuedWriter,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.sink = sink
        self.draw = draw
        self.default = Policy(config.sample_rate, config.content)
        self.policies = {
            name: Policy(
                o.sample_rate if o.sample_rate is not None else config.sample_rate,
                o.content if o.content is not None else config.content,
            )
            for name, o in config.decisions.items()
        }

    def sample(self, plan: RoutePlan, ctx: RequestContext, always: bool = False) -> Sample:
        """Whether this routed request is recorded, and with what; ``always``: recorded
        whatever the rate (a shadowed request, whose shadow records need it)."""
        policy = self.policies.get(plan.decision, self.default)
        if not always and not self._drawn(policy.rate):
            return SKIPPED
        if not policy.content:
            return Sample(True, ctx.request.model)
        redactor = next(
            (p for p in plan.plugins if isinstance(p, RedactPiiPlugin) and p.enabled), None
        )
        content = Content(
            ctx.text("last_user"),
            ctx.request.messages,
            ctx.endpoint,
            ctx.native_format,
            redactor,
            len(ctx.text("all")),
            streamed=ctx.request.stream,
        )
        return Sample(True, ctx.request.model, content)

    def served(
        self, record: RequestRecord, status: int, cost: float | None, usage: Usage | None
    ) -> None:
        """Write ``record``'s served record, if it is sampled."""
        sample = record.sample
        if sample is None:  # ended before routing
            sample = UNROUTED if self._drawn(self.default.rate) else SKIPPED
        if not sample.recorded:
            return
        now = time.perf_counter()
        plan = record.plan
        out = {
            "v": VERSION,
            "kind": "served",
            "request_id": record.request_id,
            "time": time.time() - (now - record.started),
            "surface": record.surface,
            "decision": plan.decision if plan is not None else None,
            "requested_model": sample.requested,
            "signals": _signals(plan) if plan is not None else {},
            "candidates": list(plan.candidates) if plan is not None else [],
            "model": record.routed_model,
            "attempts": [[model, error] for model, error in record.attempts.tried],
            "usage": usage_fields(usage),
            "cost_usd": cost,
            "latency_ms": round((now - record.started) * 1000, 3),
            "status": status,
            "stream": record.stream,
            "error": record.error.code if record.error is not None else None,
            "trace_id": record.trace_id,  # set by tracing when a span is open
        }
        if record.cache is not None:
            out["cache"] = record.cache.outcome
        content, answers = sample.content, 0
        if record.calls is not None:  # a cascade's or aggregate's: every call it made
            out["calls"], answers = call_entries(record.calls, content is not None)
        if content is None:
            self.sink.write_with(out, None)
        else:
            self.sink.write_with(out, content.finish, content.weight() + answers)

    def _drawn(self, rate: float) -> bool:
        return rate >= 1.0 or (rate > 0.0 and self.draw() < rate)


def _signals(plan: RoutePlan) -> dict[str, Any]:
    return {
        name: result.value if result.value is not None else result.fired
        for name, result in plan.signals.items()
    }
