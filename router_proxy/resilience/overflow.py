"""An upstream that says the prompt is too long for it: its context-length error, and
what the dispatcher does next (another candidate with a larger window, if any).

OpenAI and most OpenAI-compatible servers answer 400 with code
``context_length_exceeded``; vLLM sends no string code and Anthropic none at all, so
their messages are read too ("maximum context length is ...", "prompt is too long: ...",
"input length and `max_tokens` exceed context limit ...").
"""

from __future__ import annotations

import re
from typing import Protocol

from router_proxy.errors import GatewayError, UpstreamStatusError

CONTEXT_CODES = frozenset({"context_length_exceeded"})
# Statuses an upstream says "too long" with (a 413 from a proxy in front counts too).
_STATUSES = frozenset({400, 413, 422})
_MESSAGE = re.compile(
    r"context[ _-]?(?:length|window|limit)|prompt is too long|input is too long"
    r"|too many input tokens|input token count .{0,40}exceeds",
    re.IGNORECASE,
)


def is_context_overflow(error: GatewayError) -> bool:
    """Whether ``error`` is an upstream refusing a prompt too long for its window."""
    if not isinstance(error, UpstreamStatusError) or error.upstream_status not in _STATUSES:
        return False
    detail = error.upstream
    if detail is not None and detail.code in CONTEXT_CODES:
        return True
    return _MESSAGE.search(error.message) is not None


class Overflow(Protocol):
    """One request's answer to a context-length refusal (built by the engine, which knows
    the windows and the decision's ``context_fallbacks``)."""

    def after(self, model: str, queue: list[str], skipped: list[tuple[str, str]]) -> list[str]:
        """The models to try next, now that ``model`` refused the prompt as too long:
        those of ``queue`` (and the context fallbacks) with a larger window; the others
        are added to ``skipped`` as ``(model, "context")``."""
        ...

    def error(self) -> GatewayError:
        """The client's error when no candidate could take the prompt (400
        ``context_length_exceeded`` naming the largest window)."""
        ...
