"""One chat request's trip through the gateway: read, route, call, answer, account.

Metrics and the request's log line are written exactly once, when the answer is complete
(for a stream: when its last byte has gone or the client has left).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi.responses import Response, StreamingResponse
from starlette.requests import Request

from router_proxy.context import SECRET_HEADERS, RequestContext
from router_proxy.errors import GatewayError, UpstreamError, UpstreamTimeoutError
from router_proxy.observability.logging import ACCESS_LOGGER, log_event
from router_proxy.observability.metrics import UNKNOWN
from router_proxy.pipeline import RoutePlan
from router_proxy.protocol import Usage
from router_proxy.providers.base import ChatStream, Completion, Timeouts, UpstreamCall
from router_proxy.providers.http import sse_event
from router_proxy.resilience.dispatch import AttemptLog
from router_proxy.runtime import Runtime
from router_proxy.server.auth import ANONYMOUS
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
        self.client = ANONYMOUS
        self.log = AttemptLog()

    def headers(self) -> dict[str, str]:
        headers = {REQUEST_ID_HEADER: self.request_id}
        if self.plan is not None:
            headers["x-router-decision"] = self.plan.decision
            headers["x-router-model"] = self.model or self.plan.model
            if self.log.attempts:
                headers["x-router-attempts"] = str(self.log.attempts)
        return headers

    @property
    def model(self) -> str | None:
        """The model that answered (None before one has)."""
        return self.log.model

    async def route(self, *, admit: bool = False) -> tuple[RequestContext, RoutePlan]:
        """Auth, limits, body, validation and routing: everything before the upstream."""
        self.client = self.runtime.auth.check(self.request.headers.get("authorization"))
        if admit and self.runtime.limits.enabled:
            await self.runtime.limits.admit_client(self.client)
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
            ctx, plan = await self.route(admit=True)
            body = plan.outgoing_body(ctx)
            dispatcher = self.runtime.dispatcher
            if self.stream:
                opened = await dispatcher.run(
                    plan.candidates, functools.partial(self._open_stream, body), self.log
                )
                stream, first = opened.result
                handed_to_stream = True
                return StreamingResponse(
                    self._relay(stream, first),
                    media_type="text/event-stream",
                    headers={**self.headers(), "cache-control": "no-cache"},
                )
            answered = await dispatcher.run(
                plan.candidates, functools.partial(self._complete, body), self.log
            )
            completion = answered.result
            self.usage = completion.usage
            await self._charge()
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

    def _call(self, body: dict[str, Any], model: str, left: float | None) -> UpstreamCall:
        timeouts = self.runtime.config.models[model].call_timeouts()
        if left is not None and left < timeouts.total:  # the request's deadline is nearer
            timeouts = Timeouts(
                total=left,
                first_byte=min(timeouts.idle, left),
                connect=timeouts.connect,
            )
        return UpstreamCall(
            model_name=model,
            upstream_model=self.runtime.config.upstream_name(model),
            body=body,
            timeouts=timeouts,
            request_id=self.request_id,
        )

    async def _complete(self, body: dict[str, Any], model: str, left: float | None) -> Completion:
        call = self._call(body, model, left)
        return await self._timed(model, self.runtime.provider_for(model).complete(call))

    async def _open_stream(
        self, body: dict[str, Any], model: str, left: float | None
    ) -> tuple[ChatStream, bytes]:
        """Open the stream and wait for its first event: until that has gone to the client,
        a failure can still fall back to the next candidate."""
        call = self._call(body, model, left)
        return await self._timed(model, self._first_event(model, call))

    async def _first_event(self, model: str, call: UpstreamCall) -> tuple[ChatStream, bytes]:
        stream = await self.runtime.provider_for(model).stream(call)
        try:
            async with asyncio.timeout(call.timeouts.idle):
                first = await anext(stream.chunks)
        except TimeoutError as exc:
            await stream.chunks.aclose()
            raise UpstreamTimeoutError(f"model '{model}' sent no event in time") from exc
        except (GatewayError, StopAsyncIteration) as exc:
            await stream.chunks.aclose()
            if isinstance(exc, GatewayError):
                raise
            raise UpstreamError(f"model '{model}' ended its stream at once") from exc
        return stream, first

    async def _timed(self, model: str, upstream: Awaitable[T]) -> T:
        began = time.perf_counter()
        try:
            result = await upstream
            # Successes only: a fast failure is not a fast model. (For a stream this is
            # the time to its first event.)
            self.runtime.resources.latency.observe(model, time.perf_counter() - began)
            return result
        except GatewayError as exc:
            self.runtime.metrics.upstream_errors.labels(model, exc.code or "error").inc()
            raise
        finally:
            self.upstream_seconds = time.perf_counter() - began

    async def _relay(self, stream: ChatStream, first: bytes) -> AsyncIterator[bytes]:
        began = time.perf_counter() - (self.upstream_seconds or 0.0)
        try:
            yield first
            async for chunk in stream.chunks:
                yield chunk
        except GatewayError as exc:
            # Headers (200) are gone: end the stream with an error event the OpenAI SDK
            # raises on, and close cleanly; never a silent, truncated success.
            self.error = exc
            if self.model is not None:
                self.runtime.metrics.upstream_errors.labels(self.model, exc.code or "error").inc()
                self.runtime.resources.breakers.record_failure(self.model)
            yield sse_event(exc.to_dict())
        except Exception:  # the HTTP boundary: a bug must not leave the client hanging
            logger.exception("stream failed (request %s)", self.request_id)
            self.error = GatewayError("internal error while streaming")
            yield sse_event(self.error.to_dict())
        except asyncio.CancelledError:
            # The client left, or shutdown's grace ran out: the log line must not read as
            # a complete answer.
            self.error = GatewayError("stream ended before its last event", code="stream_cut")
            raise
        finally:
            await stream.chunks.aclose()
            self.usage = stream.stats.usage
            self.upstream_seconds = time.perf_counter() - began
            self._charge_later()
            self.finish(200)
            self._done()

    def _cost(self) -> float | None:
        model, usage = self.model, self.usage
        if model is None or usage is None:
            return None
        return self.runtime.config.models[model].cost.dollars(
            usage.prompt_tokens, usage.completion_tokens
        )

    async def _charge(self) -> None:
        limits, usage = self.runtime.limits, self.usage
        if limits.enabled and usage is not None and self.model is not None:
            tokens = usage.prompt_tokens + usage.completion_tokens
            await limits.charge(self.client, self.model, tokens, self._cost() or 0.0)

    def _charge_later(self) -> None:
        """From a stream's end (maybe a client that left): off the closing generator."""
        if self.runtime.limits.enabled and self.usage is not None:
            task = asyncio.get_running_loop().create_task(self._charge())
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)

    def finish(self, status: int) -> None:
        plan, usage, cost = self.plan, self.usage, self._cost()
        metrics = self.runtime.metrics
        metrics.record(
            plan.decision if plan else UNKNOWN,
            self.model or (plan.model if plan else UNKNOWN),
            status,
            self.upstream_seconds,
            usage,
            cost,
        )
        self._count_attempts()
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
            model=self.model or (plan.model if plan else None),
            attempts=self.log.attempts or None,
            via=plan.via if plan else None,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            routing_ms=round(plan.routing_seconds * 1000, 3) if plan else None,
            upstream_ms=round(self.upstream_seconds * 1000, 3) if self.upstream_seconds else None,
            prompt_tokens=self.usage.prompt_tokens if self.usage else None,
            completion_tokens=self.usage.completion_tokens if self.usage else None,
            cost_usd=cost,
            error=self.error.code if self.error else None,
        )

    def _count_attempts(self) -> None:
        metrics, tried = self.runtime.metrics, self.log.tried
        for i, (model, error) in enumerate(tried):
            outcome = "success" if error is None else "retry" if i + 1 < len(tried) else "failure"
            metrics.upstream_attempts.labels(model, outcome).inc()
        if self.plan is not None and self.model is not None and self.model != self.plan.model:
            metrics.fallbacks.labels(self.plan.decision).inc()


# Stream-end bookkeeping tasks, held until done (the loop keeps only weak references).
_BACKGROUND: set[asyncio.Task[None]] = set()
