"""What a multi-call request did, for its headers, log line and metrics: each call with
why the plan went on past it (``context``: not made, no model of it could take the
prompt), and each stage's time; and, when nothing answered, the client's error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router_proxy.errors import GatewayError, ServiceUnavailableError
from router_proxy.protocol import Usage

if TYPE_CHECKING:
    from router_proxy.engine.multi_call.calls import Call

CALLS_HEADER = "x-router-calls"


@dataclass(eq=False, slots=True)
class MultiCallNote:
    kind: str  # cascade | aggregate
    calls: list[Call] = field(default_factory=list)
    stage_seconds: list[float] = field(default_factory=list)  # each stage, calls in parallel

    @property
    def stages(self) -> int:
        """Stages reached (aggregate: the panel is one stage, a refiner another)."""
        return len(self.stage_seconds)

    def usage(self) -> Usage:
        """Every call's tokens, discarded answers included."""
        used = [c.usage for c in self.calls if c.usage is not None]
        return Usage(
            prompt_tokens=sum(u.prompt_tokens for u in used),
            completion_tokens=sum(u.completion_tokens for u in used),
        )

    def cost(self) -> float | None:
        """US$ of every call priced; None when none could be."""
        costs = [c.cost for c in self.calls if c.cost is not None]
        return sum(costs) if costs else None

    def answered_by(self) -> frozenset[str]:
        """The models whose calls answered the question (a shadow need not ask them)."""
        return frozenset(c.model for c in self.calls if c.answered)

    def header(self) -> str:
        """``a:agree-fail,b:agree-fail,c:answered``."""
        return ",".join(f"{c.model}:{c.reason}" for c in self.calls)

    def failure(self) -> GatewayError:
        """No call gave an answer: the one failure, or each one's (503); when no call
        could be made at all, the 400 ``context_length_exceeded`` of the last one passed
        over (its plan's fit had judged every model by then)."""
        called = [c for c in self.calls if c.called]
        if not called and self.calls and self.calls[-1].error is not None:
            return self.calls[-1].error
        errors = [c.error for c in called if c.error is not None]
        if len(errors) == 1:
            return errors[0]
        failures = "; ".join(f"'{c.model}': {c.error.message}" for c in called if c.error)
        failures = failures or "no answer could be read"
        return ServiceUnavailableError(
            f"Every model called failed: {failures}", code="all_candidates_failed"
        )

    def log_fields(self) -> dict[str, Any]:
        return {
            "calls": self.header(),
            "calls_count": sum(1 for c in self.calls if c.called),
            "stages": self.stages,
            "stages_ms": [round(s * 1000, 3) for s in self.stage_seconds],
        }
