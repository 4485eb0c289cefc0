"""A real OTLP/HTTP trace receiver for tests: ``POST /v1/traces`` with a protobuf
``ExportTraceServiceRequest`` (decoded with opentelemetry-proto, the collector's own
message definitions), served by uvicorn on a loopback port in a background thread.

No collector binary installs offline (neither PyPI nor Debian ships otelcol or Jaeger),
so this is the receiving half of the protocol, as small as it can be: it answers what a
collector answers (an empty ``ExportTraceServiceResponse``) and keeps every span.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.serving import ServerThread

# opentelemetry.proto.trace.v1.Span.SpanKind and Status.StatusCode
KIND_SERVER, KIND_CLIENT, KIND_INTERNAL = 2, 3, 1
STATUS_ERROR = 2


@dataclass
class ReceivedEvent:
    name: str
    time: int  # ns since the epoch
    attributes: dict[str, Any]


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    kind: int
    start: int  # ns since the epoch
    end: int
    attributes: dict[str, Any]
    status: int
    events: list[ReceivedEvent] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind is not None else None


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items if isinstance(kv, KeyValue)}


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests: list[dict[str, str]] = []  # each export's headers
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v1/traces", self._export, methods=["POST"])])
        self._server = ServerThread(app)

    @property
    def endpoint(self) -> str:
        return self._server.base_url + "/v1/traces"

    async def _export(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in message.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            start=span.start_time_unix_nano,
                            end=span.end_time_unix_nano,
                            attributes=_attributes(span.attributes),
                            status=span.status.code,
                            events=[
                                ReceivedEvent(e.name, e.time_unix_nano, _attributes(e.attributes))
                                for e in span.events
                            ],
                            resource=resource,
                        )
                    )
        with self._lock:
            self.spans.extend(spans)
            self.requests.append(dict(request.headers))
        return Response(
            ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf"
        )

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """The spans received so far, once ``found`` holds of them (waits for exports)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if found(spans):
                return spans
            assert time.monotonic() < deadline, f"spans not received: {[s.name for s in spans]}"
            time.sleep(0.02)

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()
