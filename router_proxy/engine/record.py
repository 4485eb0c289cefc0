"""RequestRecord: what one request did, filled in as it walks through the engine, and
written out once (metrics, the log line) when its answer is complete."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from router_proxy.cache.response_cache import CacheUse
from router_proxy.engine.auth import ANONYMOUS
from router_proxy.engine.multi_call.note import CALLS_HEADER, MultiCallNote
from router_proxy.engine.turn_note import TurnNote
from router_proxy.errors import GatewayError
from router_proxy.pipeline import RoutePlan
from router_proxy.protocol import Usage
from router_proxy.records.recorder import Sample
from router_proxy.resilience.dispatch import AttemptLog

if TYPE_CHECKING:
    from router_proxy.engine.shadow import ShadowJob
    from router_proxy.observability.tracing import RequestTrace

REQUEST_ID_HEADER = "x-router-request-id"
# The same id under the name the OpenAI SDK reads into ``response._request_id``.
SDK_REQUEST_ID_HEADER = "x-request-id"


@dataclass(eq=False, slots=True)
class RequestRecord:
    request_id: str
    surface: str  # the API the client spoke: chat, ...
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    client: str = ANONYMOUS  # the client key's id (never the key)
    stream: bool = False
    plan: RoutePlan | None = None
    attempts: AttemptLog = field(default_factory=AttemptLog)
    usage: Usage | None = None
    # The answering call: when it began, how long until its answer started (a stream's
    # first event), and how long in all (a stream: to its last byte).
    call_started: float | None = None
    first_byte_seconds: float | None = None
    upstream_seconds: float | None = None
    error: GatewayError | None = None
    # Parts of the request the answering call did not get (a translation left them out).
    dropped: tuple[str, ...] = ()
    turn: TurnNote | None = None  # its conversation's session and model (affinity)
    cache: CacheUse | None = None  # None: the decision does not cache
    # Decision records: whether this request is recorded (None: not drawn yet, or the
    # policy records nothing), and its content kept for the record.
    sample: Sample | None = None
    shadow: ShadowJob | None = None  # sampled for shadow calls, started once answered
    calls: MultiCallNote | None = None  # a cascade's or aggregate's calls; None: one call
    trace: RequestTrace | None = None  # None: not traced (tracing off, or not sampled)

    @property
    def trace_id(self) -> str | None:
        """The request's OpenTelemetry trace id (32 hex digits) when it was traced."""
        return self.trace.trace_id if self.trace is not None else None

    @property
    def model(self) -> str | None:
        """The model that answered (None before one has); on a cache hit, the one whose
        answer was stored."""
        if self.attempts.model is None and self.cache is not None:
            return self.cache.model
        return self.attempts.model

    @property
    def routed_model(self) -> str | None:
        """The model that answered, else the one routing chose first."""
        model = self.model
        if model is not None:
            return model
        return self.plan.model if self.plan is not None else None

    def headers(self) -> dict[str, str]:
        """``x-router-*``: the request id always (also as ``x-request-id``); decision,
        model and attempts once routed (an error before routing, e.g. a bad key or body,
        has none to tell)."""
        headers = {REQUEST_ID_HEADER: self.request_id, SDK_REQUEST_ID_HEADER: self.request_id}
        if self.plan is not None:
            headers["x-router-decision"] = self.plan.decision
            headers["x-router-model"] = self.model or self.plan.model
            if self.attempts.attempts:
                headers["x-router-attempts"] = str(self.attempts.attempts)
            if self.cache is not None:
                headers["x-router-cache"] = self.cache.outcome
            if self.calls is not None:
                headers[CALLS_HEADER] = self.calls.header()
        if self.turn is not None:
            headers.update(self.turn.headers())
        return headers
