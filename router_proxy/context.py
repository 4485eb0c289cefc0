"""RequestContext: everything routing may read about one request, and nothing of HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from router_proxy.protocol import ChatCompletionRequest, Endpoint, message_text

TextScope = Literal["last_user", "user", "all"]

# Credentials never reach routing (signals, explain output, logs): the server drops these
# request headers before building the context.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)


@dataclass(frozen=True, slots=True)
class Preferences:
    """What the caller asked of routing for this request (body fields or ``x-router-*``
    headers), held within the policy's bounds (engine/preferences.py)."""

    allowed: tuple[str, ...] | None = None  # only these models
    excluded: tuple[str, ...] = ()  # never these
    cost_weight: float | None = None  # learned selectors' cost_weight, for this request
    max_cost_per_1k: float | None = None  # US$ per 1,000 tokens, input and output alike
    prefer: Literal["latency", "cost"] | None = None  # re-rank the candidates by it
    capped: tuple[str, ...] = ()  # values the policy held within its bounds, said how

    def to_dict(self) -> dict[str, Any]:
        fields = {
            "allowed_models": list(self.allowed) if self.allowed is not None else None,
            "excluded_models": list(self.excluded) or None,
            "cost_weight": self.cost_weight,
            "max_cost_per_1k": self.max_cost_per_1k,
            "prefer": self.prefer,
            "capped": list(self.capped) or None,
        }
        return {k: v for k, v in fields.items() if v is not None}


@dataclass
class RequestContext:
    request: ChatCompletionRequest
    # The client's JSON as sent: forwarded upstream so unknown parameters survive.
    raw_body: dict[str, Any]
    request_id: str
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names
    # What ``raw_body`` is for: routing reads ``request`` (the canonical chat shape) for
    # every endpoint; the body goes upstream to this one.
    endpoint: Endpoint = "chat"
    # The client's body in its own wire format (a surface other than chat), for a model
    # whose provider speaks that format natively: it then goes upstream untranslated.
    native_format: str | None = None
    native_body: dict[str, Any] | None = None
    _texts: dict[str, str] = field(default_factory=dict, repr=False)
    # Per-request results signals share (e.g. one token count for several length signals).
    memo: dict[str, Any] = field(default_factory=dict, repr=False)
    preferences: Preferences | None = None  # what the caller asked of routing, if anything

    @classmethod
    def from_prompt(cls, prompt: str, *, request_id: str = "explain") -> RequestContext:
        raw: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
        return cls(ChatCompletionRequest.model_validate(raw), raw, request_id)

    def text(self, scope: TextScope = "last_user") -> str:
        """Concatenated message text for a scope; computed once per request and scope."""
        cached = self._texts.get(scope)
        if cached is not None:
            return cached
        messages = self.request.messages
        if scope == "last_user":
            user = [m for m in messages if m.role == "user"]
            text = message_text(user[-1]) if user else ""
        elif scope == "user":
            text = "\n".join(message_text(m) for m in messages if m.role == "user")
        else:
            text = "\n".join(message_text(m) for m in messages)
        self._texts[scope] = text
        return text
