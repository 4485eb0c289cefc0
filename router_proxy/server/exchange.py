"""One chat request's trip through the gateway: read, route, call, answer, account.

Metrics and the request's log line are written exactly once, when the answer is complete
(for a stream: when its last byte has gone or the client has left).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi.responses import Response, StreamingResponse
from starlette.requests import Request

from router_proxy.context import SECRET_HEADERS, RequestContext
from router_proxy.errors import GatewayError
from router_proxy.observability.logging import ACCESS_LOGGER, log_event
from router_proxy.observability.metrics import UNKNOWN
from router_proxy.pipeline import RoutePlan
from router_proxy.protocol import Usage
from router_proxy.providers.base import ChatStream, UpstreamCall
from router_proxy.providers.http import sse_event
from router_proxy.runtime import Runtime
from router_proxy.server.body import parse_chat_request, read_json_body
from router_proxy.server.errors import error_response
from router_proxy.server.ids import REQUEST_ID_HEADER, request_id_of

access_log = logging.getLogger(ACCESS_LOGGER)
logger = logging.getLogger("router_proxy.server")

T = TypeVar("T")


class Exchange:
    def __init__(self, runtime: Runtime, request: Request) -> None:
        self.runtime = runtime
        self.request = request
        self.request_id = request_id_of(request)
        self.started = time.perf_counter()
        self.plan: RoutePlan | None = None
        self.stream = False
        self.usage: Usage | None = None
        self.upstream_seconds: float | None = None
        self.error: GatewayError | None = None

    def headers(self) -> dict[str, str]:
        headers = {REQUEST_ID_HEADER: self.request_id}
        if self.plan is not None:
            headers["x-router-decision"] = self.plan.decision
            headers["x-router-model"] = self.plan.model
        return headers

    async def route(self) -> tuple[RequestContext, RoutePlan]:
        """Auth, body, validation and routing: everything before the upstream."""
        self.runtime.auth.check(self.request.headers.get("authorization"))
        raw = await read_json_body(self.request, self.runtime.config.server.max_body_bytes)
        chat = parse_chat_request(raw, self.runtime.config.server.max_messages)
        self.stream = chat.stream
        headers = {k: v for k, v in self.request.headers.items() if k not in SECRET_HEADERS}
        ctx = RequestContext(chat, raw, self.request_id, headers)
        plan = self.plan = await self.runtime.pipeline.route(ctx)
        self.runtime.metrics.routing_seconds.observe(plan.routing_seconds)
        return ctx, plan

    async def respond(self) -> Response:
        # The runtime stays open until this request's last byte, even across a reload.
        self.runtime.acquire()
        self.runtime.metrics.in_flight.inc()
        handed_to_stream = False
        try:
            ctx, plan = await self.route()
            model = plan.model
            provider = self.runtime.provider_for(model)
            call = UpstreamCall(
                model_name=model,
                upstream_model=self.runtime.config.upstream_name(model),
                body=plan.outgoing_body(ctx),
                timeout=self.runtime.config.models[model].timeout,
                request_id=self.request_id,
            )
            if self.stream:
                opened = await self._timed(provider.stream(call))
                handed_to_stream = True
                return StreamingResponse(
                    self._relay(opened),
                    media_type="text/event-stream",
                    headers={**self.headers(), "cache-control": "no-cache"},
                )
            completion = await self._timed(provider.complete(call))
            self.usage = completion.usage
            self.finish(200)
            return Response(completion.body, media_type="application/json", headers=self.headers())
        except GatewayError as exc:
            self.error = exc
            self.finish(exc.status_code)
            return error_response(exc, self.headers())
        finally:
            if not handed_to_stream:
                self._done()

    def _done(self) -> None:
        self.runtime.metrics.in_flight.dec()
        self.runtime.release()

    async def _timed(self, upstream: Awaitable[T]) -> T:
        began = time.perf_counter()
        try:
            result = await upstream
            if self.plan is not None:  # successes only: a fast failure is not a fast model
                # (for a stream this is the time to its first byte)
                elapsed = time.perf_counter() - began
                self.runtime.resources.latency.observe(self.plan.model, elapsed)
            return result
        except GatewayError as exc:
            if self.plan is not None:
                self.runtime.metrics.upstream_errors.labels(
                    self.plan.model, exc.code or "error"
                ).inc()
            raise
        finally:
            self.upstream_seconds = time.perf_counter() - began

    async def _relay(self, stream: ChatStream) -> AsyncIterator[bytes]:
        began = time.perf_counter() - (self.upstream_seconds or 0.0)
        try:
            async for chunk in stream.chunks:
                yield chunk
        except GatewayError as exc:
            # Headers (200) are gone: end the stream with an error event the OpenAI SDK
            # raises on, and close cleanly; never a silent, truncated success.
            self.error = exc
            if self.plan is not None:
                self.runtime.metrics.upstream_errors.labels(
                    self.plan.model, exc.code or "error"
                ).inc()
            yield sse_event(exc.to_dict())
        except Exception:  # the HTTP boundary: a bug must not leave the client hanging
            logger.exception("stream failed (request %s)", self.request_id)
            self.error = GatewayError("internal error while streaming")
            yield sse_event(self.error.to_dict())
        finally:
            await stream.chunks.aclose()
            self.usage = stream.stats.usage
            self.upstream_seconds = time.perf_counter() - began
            self.finish(200)
            self._done()

    def finish(self, status: int) -> None:
        plan, usage = self.plan, self.usage
        cost = None
        if plan is not None and usage is not None:
            cost = self.runtime.config.models[plan.model].cost.dollars(
                usage.prompt_tokens, usage.completion_tokens
            )
        self.runtime.metrics.record(
            plan.decision if plan else UNKNOWN,
            plan.model if plan else UNKNOWN,
            status,
            self.upstream_seconds,
            usage,
            cost,
        )
        if self.runtime.config.server.log_requests:
            self._log(status, cost)

    def _log(self, status: int, cost: float | None) -> None:
        plan = self.plan
        log_event(
            access_log,
            "request",
            request_id=self.request_id,
            method=self.request.method,
            path=self.request.url.path,
            status=status,
            stream=self.stream,
            decision=plan.decision if plan else None,
            model=plan.model if plan else None,
            via=plan.via if plan else None,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            routing_ms=round(plan.routing_seconds * 1000, 3) if plan else None,
            upstream_ms=round(self.upstream_seconds * 1000, 3) if self.upstream_seconds else None,
            prompt_tokens=self.usage.prompt_tokens if self.usage else None,
            completion_tokens=self.usage.completion_tokens if self.usage else None,
            cost_usd=cost,
            error=self.error.code if self.error else None,
        )
