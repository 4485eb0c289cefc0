"""OpenTelemetry traces of the requests, exported over OTLP (``tracing:``; off by default).

Imported only when a policy has a ``tracing:`` section (``Resources`` builds ``Tracing``
then), so a gateway without one never loads the SDK and its requests pay one ``is None``
check per hook. One trace per request:

    POST /v1/chat/completions   (SERVER: the whole request; a stream's to its last byte)
      route                     decision, via, candidates; its start and end as measured
        (event) signal NAME     one per signal evaluated: its value, its own duration
        (event) select ALGO     the decision's algorithm ordering the candidates
      cache lookup              when the decision caches: hit or miss
      conversation              when affinity or context windows reorder candidates
      upstream MODEL            (CLIENT) one per attempt: retry and fallback index, the
                                provider, the error code and status of a failed one

Routing's span is made after routing from the times it measured (``signal_times``), so
the pipeline only appends two timestamps per signal, and only for a traced request. A
caller's W3C ``traceparent`` makes the request's span its child (and its sampled flag
wins over ``sample_ratio``). Spans go to a ``BatchSpanProcessor``: exported in batches
by its own thread, never on the event loop; ``shutdown`` flushes what is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from router_proxy import __version__
from router_proxy.config.tracing import TracingConfig
from router_proxy.errors import GatewayError

INSTRUMENTATION = "router_proxy"
# (kind, name, start, end): kind "signal" or "select"; times from time.time_ns(). Spelled
# out again as pipeline.Timing: the pipeline must not import this module (the SDK).
Timing = tuple[str, str, int, int]
AttributeValue = str | bool | int | float | Sequence[str]

_propagator = TraceContextTextMapPropagator()


def build_exporter(config: TracingConfig) -> SpanExporter:
    """The OTLP exporter ``config.protocol`` names (the schema has checked it installs)."""
    headers = {name: value.get_secret_value() for name, value in config.headers.items()}
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter as GrpcExporter,
        )

        exporter: SpanExporter = GrpcExporter(
            endpoint=config.endpoint, headers=headers, timeout=config.timeout
        )
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=config.endpoint, headers=headers, timeout=config.timeout)


class Tracing:
    """The process's tracer: one per ``tracing:`` config, carried across reloads while
    that section is unchanged, shut down (flushed) when a reload changes it or the
    process stops. Never the global tracer provider: what else in the process traces
    (FastAPI's own telemetry) is left as its owner configured it."""

    def __init__(self, config: TracingConfig, exporter: SpanExporter | None = None) -> None:
        self.config = config
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create(
                {"service.name": config.service_name, "service.version": __version__}
            ),
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(
                exporter or build_exporter(config),
                max_queue_size=config.max_queue,
                schedule_delay_millis=config.batch_delay_ms,
                max_export_batch_size=min(512, config.max_queue),
                export_timeout_millis=int(config.timeout * 1000),
            )
        )
        self.tracer = self.provider.get_tracer(INSTRUMENTATION, __version__)

    def begin(
        self, method: str, path: str, surface: str, request_id: str, headers: Mapping[str, str]
    ) -> RequestTrace | None:
        """The request's span, a child of the caller's ``traceparent`` if it sent one;
        None when the request is not sampled (nothing more to record for it)."""
        parent = _propagator.extract(headers) if "traceparent" in headers else None
        span = self.tracer.start_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "router.surface": surface,
                "router.request_id": request_id,
            },
        )
        if not span.is_recording():
            return None
        return RequestTrace(self.tracer, span)

    def flush(self, timeout_seconds: float = 10.0) -> bool:
        return self.provider.force_flush(int(timeout_seconds * 1000))

    def shutdown(self) -> None:
        """Export what is queued, then stop the exporter's thread (blocks: run it off
        the event loop)."""
        self.provider.shutdown()


class RequestTrace:
    """One request's spans, its own span the parent of the rest."""

    __slots__ = ("_context", "_tracer", "signal_times", "span", "trace_id")

    def __init__(self, tracer: trace.Tracer, span: Span) -> None:
        self._tracer = tracer
        self.span = span
        self._context: Context = trace.set_span_in_context(span)
        self.trace_id = format(span.get_span_context().trace_id, "032x")
        self.signal_times: list[Timing] = []  # the pipeline appends while routing

    def routed(
        self,
        started: int,
        ended: int,
        attributes: Mapping[str, AttributeValue],
        signals: Mapping[str, Mapping[str, AttributeValue]],
    ) -> None:
        """The routing span from its measured times, with an event per timed step
        (``signal_times``) at its start, its duration in ``router.duration_ms``;
        ``signals``: each signal's attributes by its name. Events, not child spans: a
        span costs the SDK about twice an event's CPU, made and exported."""
        span = self.child("route", started, attributes)
        for kind, name, start, end in self.signal_times:
            step: dict[str, AttributeValue] = {"router.duration_ms": (end - start) / 1e6}
            step.update(signals.get(name, {}) if kind == "signal" else {"router.algorithm": name})
            span.add_event(f"{kind} {name}", step, start)
        span.end(ended)

    def child(
        self, name: str, started: int, attributes: Mapping[str, AttributeValue] | None = None
    ) -> Span:
        """A span under the request's, begun at ``started`` (ns); the caller ends it."""
        return self._tracer.start_span(
            name, context=self._context, start_time=started, attributes=attributes
        )

    def attempt(self, model: str, attributes: Mapping[str, AttributeValue]) -> Span:
        """One upstream call's span (the caller ends it with ``attempt_ended``)."""
        return self._tracer.start_span(
            f"upstream {model}", context=self._context, kind=SpanKind.CLIENT, attributes=attributes
        )

    @staticmethod
    def traceparent(span: Span) -> str:
        """The W3C ``traceparent`` header naming ``span`` as the parent (written by the
        SDK's own W3C propagator)."""
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier["traceparent"]

    @staticmethod
    def attempt_ended(span: Span, error: BaseException | None) -> None:
        if error is None:
            span.set_attribute("router.outcome", "success")
        elif isinstance(error, GatewayError):
            failed(span, error)
            span.set_attribute("router.outcome", "error")
        else:  # cancelled: the client left, or shutdown
            span.set_attribute("router.outcome", "cancelled")
        span.end()

    def end(self, status: int, attributes: Mapping[str, Any], error: GatewayError | None) -> None:
        """The request's span ends: its outcome, then exported in the next batch."""
        span = self.span
        span.set_attribute("http.response.status_code", status)
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if error is not None:
            span.set_attribute("error.type", error.code or type(error).__name__)
            if status >= 500:  # a 4xx is the client's, not this server's failure
                span.set_status(Status(StatusCode.ERROR, error.message))
        span.end()


def failed(span: Span, error: GatewayError) -> None:
    span.set_attribute("error.type", error.code or type(error).__name__)
    span.set_attribute("http.response.status_code", error.status_code)
    span.set_status(Status(StatusCode.ERROR, error.message))
