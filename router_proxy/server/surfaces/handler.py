"""The HTTP side of one request on any surface: read the body, hand the canonical request
to the engine, and write the engine's answer (JSON, or an SSE stream) in the surface's
shape with the ``x-router-*`` headers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from functools import partial

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from router_proxy.context import SECRET_HEADERS, RequestContext
from router_proxy.engine.engine import Engine, OpenedStream
from router_proxy.engine.record import RequestRecord
from router_proxy.errors import ClientClosedRequestError, GatewayError, RequestTimeoutError
from router_proxy.runtime import Runtime
from router_proxy.server.answer import JsonAnswer
from router_proxy.server.body import read_json_body
from router_proxy.server.connection import CancelOnDisconnect, connection_of, gone_error
from router_proxy.server.errors import NoAnswer, internal_error
from router_proxy.server.event_stream import EventStreamResponse
from router_proxy.server.ids import request_id_of
from router_proxy.server.surfaces.base import Surface

logger = logging.getLogger("router_proxy.server")
# A request whose client is gone (it left, or its body came too slowly and the protocol
# answered 408 and closed): logged, and nothing sent.
ClientGone = ClientClosedRequestError | RequestTimeoutError


async def serve(surface: Surface, runtime: Runtime, request: Request) -> Response:
    """Answer one request: admitted, routed, called, accounted. A client that leaves
    before its answer cancels the work (the upstream call included) and is logged 499."""
    engine, record = runtime.engine, _record(surface, request)
    if engine.tracing is not None:
        record.trace = engine.tracing.begin(
            record.method, record.path, record.surface, record.request_id, request.headers
        )
    runtime.acquire()  # held until the last byte, even across a reload
    streaming = False
    connection = connection_of(request.scope)
    watch = CancelOnDisconnect(connection)
    try:
        with watch:
            await engine.admit(record, surface.credential(request.headers))
            ctx = await _canonical(surface, engine, request, record)
            await engine.route(ctx, record)
            if record.stream:
                opened = await engine.open_stream(ctx, record)
                streaming = True
                if not opened.stream.native:
                    record.dropped = surface.dropped
                return EventStreamResponse(
                    _stream(surface, runtime, opened, record),
                    surface.response_headers(record.headers()) | {"cache-control": "no-cache"},
                    opened.deadline,
                    lambda: _overdue(record),
                )
            completion = await engine.complete(ctx, record)
            if not completion.native:
                record.dropped = surface.dropped
        return JsonAnswer(
            completion.body if completion.native else surface.render(completion),
            surface.response_headers(record.headers()),
            partial(_answered, engine, record),
        )
    except GatewayError as exc:
        engine.failed(record, exc)
        if isinstance(exc, ClientGone):  # nobody to answer
            return NoAnswer()
        return surface.error_response(exc, surface.response_headers(record.headers()))
    except asyncio.CancelledError:
        if not watch.left:
            raise  # shutdown's grace ran out
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        engine.failed(record, gone_error(connection))
        return NoAnswer()
    except Exception:  # the HTTP boundary: a bug is a logged 500 with its log line
        logger.exception("unhandled error (request %s)", record.request_id)
        error = internal_error(record.request_id)
        engine.failed(record, error)
        return surface.error_response(error, surface.response_headers(record.headers()))
    finally:
        if not streaming:
            runtime.release()


def _answered(engine: Engine, record: RequestRecord) -> None:
    # After the answer has gone, so nothing may raise from here: the connection must
    # stay usable.
    try:
        engine.answered(record)
    except Exception:
        logger.exception("accounting failed (request %s)", record.request_id)


def _overdue(record: RequestRecord) -> None:
    logger.warning(
        "stream cut: the client did not read it within the model's total timeout (request %s)",
        record.request_id,
    )
    record.error = GatewayError("the client stopped reading the stream", code="stream_cut")


async def dry_run(surface: Surface, runtime: Runtime, request: Request) -> Response:
    """Route without calling any model: the plan, as JSON. Routing is work: the client's
    request limit applies as on the surfaces."""
    engine, record = runtime.engine, _record(surface, request)
    await engine.admit(record, surface.credential(request.headers))
    ctx = await _canonical(surface, engine, request, record)
    plan = await engine.route(ctx, record)
    shown = plan.to_dict()
    context = engine.conversations.dry_run(plan, ctx)
    if context is not None:  # some model declares a window: what it does to this request
        shown["context"] = context
    return JSONResponse(shown, headers=record.headers())


def _record(surface: Surface, request: Request) -> RequestRecord:
    # The scope's path, not request.url: building the URL object costs more than routing.
    return RequestRecord(
        request_id_of(request), surface.name, request.method, request.scope["path"]
    )


async def _canonical(
    surface: Surface, engine: Engine, request: Request, record: RequestRecord
) -> RequestContext:
    raw = await read_json_body(request, engine.settings.max_body_bytes, engine.pipeline.cpu)
    chat, body = surface.parse(raw, engine.settings)
    headers = {k: v for k, v in request.headers.items() if k not in SECRET_HEADERS}
    native = raw if surface.native is not None else None
    return RequestContext(
        chat, body, record.request_id, headers, surface.endpoint, surface.native, native
    )


async def _stream(
    surface: Surface, runtime: Runtime, opened: OpenedStream, record: RequestRecord
) -> AsyncGenerator[bytes, None]:
    try:
        relay = runtime.engine.relay(opened, record, surface.error_event)
        events = relay if opened.stream.native else surface.translate_stream(relay)
        async with aclosing(events):
            async for event in events:
                yield event
    finally:
        runtime.release()
