"""Helpers shared by the signal tests: build a request, evaluate a signal on it, check that
a signal config is refused. No tests here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from router_proxy.context import RequestContext
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.signals.base import Signal, SignalResult

Messages = list[dict[str, Any]]


def ctx_of(
    prompt_or_messages: str | Messages,
    *,
    headers: Mapping[str, str] | None = None,
    **body: Any,
) -> RequestContext:
    """A request for ``model: auto``: a str is one user message. ``headers`` are as the
    server passes them on (lower-cased names, credentials dropped); ``body`` adds fields
    such as ``tools``."""
    messages = (
        [{"role": "user", "content": prompt_or_messages}]
        if isinstance(prompt_or_messages, str)
        else prompt_or_messages
    )
    raw = {"model": "auto", "messages": messages, **body}
    ctx = RequestContext(ChatCompletionRequest.model_validate(raw), raw, "t")
    if headers is not None:
        ctx.headers = headers
    return ctx


def evaluate(
    signal: Signal[Any],
    request: str | Messages | RequestContext = "hello",
    *,
    headers: Mapping[str, str] | None = None,
    **body: Any,
) -> SignalResult:
    """The signal's result for a prompt, a list of messages or a ready context."""
    if isinstance(request, RequestContext):
        ctx = request
    else:
        ctx = ctx_of(request, headers=headers, **body)
    return asyncio.run(signal.evaluate(ctx))


def assert_refused(
    config_model: type[BaseModel],
    base: Mapping[str, Any],
    cases: Iterable[tuple[Mapping[str, Any], str]],
) -> None:
    """Each case (fields added to ``base``, regex its error must match) is refused at load."""
    for fields, match in cases:
        with pytest.raises(ValidationError, match=match):
            config_model.model_validate({**base, **fields})
